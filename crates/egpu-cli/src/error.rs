use thiserror::Error;

/// What a command can fail with; lower layers' errors keep their own messages.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Link(#[from] egpu_link::LinkError),
    #[error(transparent)]
    Usb(#[from] egpu_usb::UsbError),
    #[error(transparent)]
    Setup(#[from] egpu_usb::setup::SetupError),
    #[error(transparent)]
    Nvidia(#[from] egpu_nv::NvError),
    #[cfg(target_os = "linux")]
    #[error("CUDA peer: {0}")]
    CudaPeer(#[from] egpu_nv::cuda_peer::CudaError),
    #[error(transparent)]
    Model(#[from] egpu_llm::LlmError),
    #[error(transparent)]
    Firmware(#[from] egpu_amd::firmware::CheckError),
    #[error("{0}")]
    Usage(String),
    #[error("verification failed: {0}")]
    Verify(String),
}
