use thiserror::Error;

/// What a command can fail with; lower layers' errors keep their own messages.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Runtime(#[from] egpu::Error),
    #[error(transparent)]
    Link(#[from] egpu::link::LinkError),
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
