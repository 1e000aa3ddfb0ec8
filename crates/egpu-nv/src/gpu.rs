//! GPU discovery through nvidia.ko (what `egpu list` shows).

use crate::arch::Arch;
use crate::rm::DriverVersion;
use crate::NvError;
use std::fmt;

/// One NVIDIA GPU as nvidia.ko reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvGpuInfo {
    /// egpu index: `nv:<index>`.
    pub index: u32,
    /// `/dev/nvidia<minor>`.
    pub minor: u32,
    /// PCI address `domain:bus:device.function`.
    pub pci_address: String,
    /// PCI device id (vendor is 0x10DE).
    pub device_id: u16,
    /// SM version from GR_GET_INFO (e.g. 0x900), if the query worked.
    pub sm_version: Option<u32>,
    /// Architecture family, if known.
    pub arch: Option<Arch>,
    /// Loaded driver's version.
    pub driver_version: DriverVersion,
    /// BAR1 (framebuffer aperture) size in bytes as CARD_INFO reports it; not the VRAM size.
    pub bar1_bytes: u64,
}

impl fmt::Display for NvGpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nv:{}  NVIDIA 10de:{:04x}  {}", self.index, self.device_id, self.pci_address)?;
        match self.sm_version {
            Some(sm) => write!(f, "  sm_{}{}", sm >> 8, sm & 0xFF)?,
            None => f.write_str("  sm_?")?,
        }
        write!(f, "  driver {}  BAR1 {} MiB", self.driver_version, self.bar1_bytes >> 20)
    }
}

/// List NVIDIA GPUs through nvidia.ko. `NvError::NoKernelDriver` when /dev/nvidiactl is absent.
#[cfg(target_os = "linux")]
pub fn list_gpus() -> Result<Vec<NvGpuInfo>, NvError> {
    use crate::rm::client::RmClient;
    use crate::rm::structs::{
        NV0080_ALLOC_PARAMETERS, NV2080_ALLOC_PARAMETERS, NV2080_CTRL_GR_GET_INFO_PARAMS,
        NV2080_CTRL_GR_INFO,
    };
    use crate::rm::{class, ctrl};
    let client = RmClient::open()?;
    let mut out = Vec::new();
    for (index, card) in client.card_info()?.into_iter().enumerate() {
        let pci = card.pci_info;
        // The SM version needs a device + subdevice; failures leave it unknown rather than
        // hiding the GPU from the list.
        let sm_version = (|| -> Result<u32, NvError> {
            let instance = client.device_instance(card.gpu_id)?;
            let mut dev = NV0080_ALLOC_PARAMETERS {
                deviceId: instance,
                hClientShare: client.h_client(),
                ..Default::default()
            };
            let h_device =
                client.alloc(client.h_client(), 0, class::NV01_DEVICE_0, Some(&mut dev))?;
            let mut sub = NV2080_ALLOC_PARAMETERS::default();
            let h_sub = client.alloc(h_device, 0, class::NV20_SUBDEVICE_0, Some(&mut sub))?;
            let mut entries = [NV2080_CTRL_GR_INFO {
                index: ctrl::NV2080_CTRL_GR_INFO_INDEX_SM_VERSION,
                data: 0,
            }];
            let mut p = NV2080_CTRL_GR_GET_INFO_PARAMS {
                grInfoListSize: 1,
                grInfoList: entries.as_mut_ptr() as u64,
                ..Default::default()
            };
            let result = client.control(
                h_sub,
                ctrl::NV2080_CTRL_CMD_GR_GET_INFO,
                &mut p,
                "NV2080_CTRL_CMD_GR_GET_INFO",
            );
            let _ = client.free(client.h_client(), h_device);
            result?;
            Ok(entries[0].data)
        })()
        .ok();
        out.push(NvGpuInfo {
            index: index as u32,
            minor: card.minor_number,
            pci_address: format!(
                "{:04x}:{:02x}:{:02x}.{}",
                pci.domain, pci.bus, pci.slot, pci.function
            ),
            device_id: pci.device_id,
            sm_version,
            arch: sm_version.and_then(Arch::from_sm_version),
            driver_version: client.version(),
            bar1_bytes: card.fb_size,
        });
    }
    Ok(out)
}

/// List NVIDIA GPUs: not available off Linux.
#[cfg(not(target_os = "linux"))]
pub fn list_gpus() -> Result<Vec<NvGpuInfo>, NvError> {
    Err(NvError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_kernel_driver_is_a_distinct_error() {
        if std::path::Path::new("/dev/nvidiactl").exists() {
            eprintln!("SKIP: this machine has nvidia.ko; the no-driver path cannot be observed");
            return;
        }
        match list_gpus() {
            Err(NvError::NoKernelDriver) => {}
            other => panic!("expected NoKernelDriver, got {other:?}"),
        }
        assert!(NvError::NoKernelDriver.to_string().contains("no NVIDIA kernel driver"));
    }

    #[test]
    fn info_displays_sm_and_driver() {
        let info = NvGpuInfo {
            index: 0,
            minor: 0,
            pci_address: "0000:41:00.0".into(),
            device_id: 0x2330,
            sm_version: Some(0x900),
            arch: Some(Arch::Hopper),
            driver_version: DriverVersion { major: 580, minor: 105, patch: 8 },
            bar1_bytes: 128 << 30,
        };
        assert_eq!(
            info.to_string(),
            "nv:0  NVIDIA 10de:2330  0000:41:00.0  sm_90  driver 580.105.08  BAR1 131072 MiB"
        );
    }
}
