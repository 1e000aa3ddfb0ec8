//! Spot checks of the generated tables against numbers written in the reference document
//! `docs/reference/amd-driver.md` (section given per test). These numbers were copied from the
//! document, not from the generator, so a broken generator cannot pass by agreeing with itself.

use egpu_amd::regs::*;

/// §1.2 "Registers move between versions".
#[test]
fn gc11_vs_gc12_moved_registers() {
    assert_eq!(gc_11_0_0::regGCVM_CONTEXT0_CNTL.offset, 0x1688);
    assert_eq!(gc_12_0_0::regGCVM_CONTEXT0_CNTL.offset, 0x1624);
    assert_eq!(gc_11_0_0::regGCMC_VM_FB_LOCATION_BASE.offset, 0x1678);
    assert_eq!(gc_12_0_0::regGCMC_VM_FB_LOCATION_BASE.offset, 0x1614);
    assert_eq!(gc_11_0_0::regRLC_RLCS_BOOTLOAD_STATUS.offset, 0x4e82);
    assert_eq!(gc_12_0_0::regRLC_RLCS_BOOTLOAD_STATUS.offset, 0x4e7c);
    assert_eq!(gc_11_0_0::regSDMA0_QUEUE0_RB_RPTR_ADDR_LO.offset, 0x89);
    assert_eq!(gc_12_0_0::regSDMA0_QUEUE0_RB_RPTR_ADDR_LO.offset, 0x87);
    assert_eq!(gc_11_0_0::regSDMA0_QUEUE0_DOORBELL_OFFSET.offset, 0xab);
    assert_eq!(gc_12_0_0::regSDMA0_QUEUE0_DOORBELL_OFFSET.offset, 0x91);
    assert_eq!(gc_11_0_0::regSDMA0_QUEUE0_MINOR_PTR_UPDATE.offset, 0xb5);
    assert_eq!(gc_12_0_0::regSDMA0_QUEUE0_MINOR_PTR_UPDATE.offset, 0x9b);
    // SDMA0_F32_CNTL (gc11) becomes SDMA0_MCU_CNTL (gc12); the FAULT_STATUS register gets _LO32.
    assert!(gc_11_0_0::REGISTERS.iter().any(|r| r.name == "SDMA0_F32_CNTL"));
    assert!(!gc_12_0_0::REGISTERS.iter().any(|r| r.name == "SDMA0_F32_CNTL"));
    assert!(gc_12_0_0::REGISTERS.iter().any(|r| r.name == "SDMA0_MCU_CNTL"));
    assert!(gc_11_0_0::REGISTERS.iter().any(|r| r.name == "GCVM_L2_PROTECTION_FAULT_STATUS"));
    assert!(gc_12_0_0::REGISTERS.iter().any(|r| r.name == "GCVM_L2_PROTECTION_FAULT_STATUS_LO32"));
}

/// §1.2: indirect-access registers and the pre-discovery VRAM size register (dword 0xde3 =
/// NBIO segment 2 base 0xD20 + offset).
#[test]
fn nbio_fixed_registers() {
    let s2a = nbio_4_3_0::regS2A_DOORBELL_ENTRY_0_CTRL;
    assert_eq!((s2a.base_idx, s2a.offset), (3, 0x4f7640));
    for r in [nbio_4_3_0::regBIF_BX_PF0_RSMU_INDEX, nbif_6_3_1::regBIF_BX_PF0_RSMU_INDEX] {
        assert_eq!((r.base_idx, r.offset), (1, 0x0));
    }
    assert_eq!(nbio_4_3_0::regBIF_BX_PF0_RSMU_DATA.offset, 0x1);
    let nbio_bases = [0x0, 0x14, 0xD20, 0x10400, 0x241B000];
    assert_eq!(nbio_4_3_0::regRCC_DEV0_EPF0_RCC_CONFIG_MEMSIZE.absolute(&nbio_bases), Some(0xde3));
    // §2.4: doorbell aperture enable and the gfx12 S2A entries.
    let aper = nbio_4_3_0::regRCC_DEV0_EPF0_RCC_DOORBELL_APER_EN;
    assert_eq!((aper.base_idx, aper.offset), (2, 0xc0));
    assert_eq!(nbif_6_3_1::regGDC_S2A0_S2A_DOORBELL_ENTRY_0_CTRL.offset, 0x1cb);
    assert_eq!(nbif_6_3_1::regGDC_S2A0_S2A_DOORBELL_ENTRY_2_CTRL.offset, 0x1cd);
    assert_eq!(nbif_6_3_1::regGDC_S2A0_S2A_DOORBELL_ENTRY_3_CTRL.offset, 0x1ce);
    // §5.2 / §9.5: HDP flush REQ/DONE, NBIO/NBIF segment 2, 0x106/0x107 in both.
    for (req, done) in [
        (nbio_4_3_0::regBIF_BX_PF0_GPU_HDP_FLUSH_REQ, nbio_4_3_0::regBIF_BX_PF0_GPU_HDP_FLUSH_DONE),
        (nbif_6_3_1::regBIF_BX_PF0_GPU_HDP_FLUSH_REQ, nbif_6_3_1::regBIF_BX_PF0_GPU_HDP_FLUSH_DONE),
    ] {
        assert_eq!((req.base_idx, req.offset, done.offset), (2, 0x106, 0x107));
    }
}

/// §2.3 (boot-state registers) and §2.7 (PSP mailbox).
#[test]
fn boot_state_and_psp_mailbox() {
    for (reg7, reg6) in [
        (gc_11_0_0::regSCRATCH_REG7, gc_11_0_0::regSCRATCH_REG6),
        (gc_12_0_0::regSCRATCH_REG7, gc_12_0_0::regSCRATCH_REG6),
    ] {
        assert_eq!((reg7.base_idx, reg7.offset, reg6.offset), (1, 0x2047, 0x2046));
    }
    let mp13 = [
        (mp_13_0_0::regMP0_SMN_C2PMSG_33, 0x61),
        (mp_13_0_0::regMP0_SMN_C2PMSG_35, 0x63),
        (mp_13_0_0::regMP0_SMN_C2PMSG_36, 0x64),
        (mp_13_0_0::regMP0_SMN_C2PMSG_64, 0x80),
        (mp_13_0_0::regMP0_SMN_C2PMSG_67, 0x83),
        (mp_13_0_0::regMP0_SMN_C2PMSG_69, 0x85),
        (mp_13_0_0::regMP0_SMN_C2PMSG_70, 0x86),
        (mp_13_0_0::regMP0_SMN_C2PMSG_71, 0x87),
        (mp_13_0_0::regMP0_SMN_C2PMSG_81, 0x91),
    ];
    for (r, off) in mp13 {
        assert_eq!((r.base_idx, r.offset), (0, off), "{}", r.name);
    }
    assert_eq!(mp_14_0_2::regMPASP_SMN_C2PMSG_81.offset, 0x91);
    assert_eq!(mp_14_0_2::regMPASP_SMN_C2PMSG_35.offset, 0x63);
}

/// §2.8: the SMU mailbox uses the mp_11_0 MP1 definitions.
#[test]
fn smu_mailbox_and_messages() {
    assert_eq!(mp_11_0::mmMP1_SMN_C2PMSG_66.offset, 0x282);
    assert_eq!(mp_11_0::mmMP1_SMN_C2PMSG_82.offset, 0x292);
    assert_eq!(mp_11_0::mmMP1_SMN_C2PMSG_90.offset, 0x29a);
    assert_eq!(mp_11_0::mmMP1_SMN_C2PMSG_53.offset, 0x275);
    assert_eq!(mp_11_0::mmMP1_SMN_C2PMSG_54.offset, 0x276);
    assert_eq!(mp_11_0::mmMP1_SMN_C2PMSG_75.offset, 0x28b);
    for (get_ver, enable, hi, lo, xfer, min, max, dpm, ppt) in [
        (
            smu::v13_0_0::PPSMC_MSG_GetSmuVersion,
            smu::v13_0_0::PPSMC_MSG_EnableAllSmuFeatures,
            smu::v13_0_0::PPSMC_MSG_SetDriverDramAddrHigh,
            smu::v13_0_0::PPSMC_MSG_SetDriverDramAddrLow,
            smu::v13_0_0::PPSMC_MSG_TransferTableSmu2Dram,
            smu::v13_0_0::PPSMC_MSG_SetSoftMinByFreq,
            smu::v13_0_0::PPSMC_MSG_SetSoftMaxByFreq,
            smu::v13_0_0::PPSMC_MSG_GetDpmFreqByIndex,
            smu::v13_0_0::PPSMC_MSG_SetPptLimit,
        ),
        (
            smu::v14_0_2::PPSMC_MSG_GetSmuVersion,
            smu::v14_0_2::PPSMC_MSG_EnableAllSmuFeatures,
            smu::v14_0_2::PPSMC_MSG_SetDriverDramAddrHigh,
            smu::v14_0_2::PPSMC_MSG_SetDriverDramAddrLow,
            smu::v14_0_2::PPSMC_MSG_TransferTableSmu2Dram,
            smu::v14_0_2::PPSMC_MSG_SetSoftMinByFreq,
            smu::v14_0_2::PPSMC_MSG_SetSoftMaxByFreq,
            smu::v14_0_2::PPSMC_MSG_GetDpmFreqByIndex,
            smu::v14_0_2::PPSMC_MSG_SetPptLimit,
        ),
    ] {
        let ids = [get_ver, enable, hi, lo, xfer, min, max, dpm, ppt].map(|m| m.0);
        assert_eq!(ids, [0x2, 0x6, 0xE, 0xF, 0x12, 0x19, 0x1A, 0x1F, 0x32]);
    }
    assert_eq!(smu::v13_0_0::PPSMC_MSG_Mode1Reset.0, 0x2F);
    assert_eq!(smu::v13_0_0::DEBUGSMC_MSG_Mode1Reset.0, 2);
    assert_eq!(smu::v14_0_2::DEBUGSMC_MSG_Mode1Reset.0, 2);
    use smu::v13_0_0::PPCLK_e;
    assert_eq!(
        [PPCLK_e::PPCLK_GFXCLK, PPCLK_e::PPCLK_SOCCLK, PPCLK_e::PPCLK_UCLK, PPCLK_e::PPCLK_FCLK]
            .map(|c| c.0),
        [0, 1, 2, 3]
    );
}

/// §2.7: PSP command ids, ring control ids, bootloader commands, firmware types, struct sizes.
#[test]
fn psp_interface() {
    use psp::*;
    assert_eq!(psp_gfx_cmd_id::GFX_CMD_ID_LOAD_TA.0, 1);
    assert_eq!(psp_gfx_cmd_id::GFX_CMD_ID_INVOKE_CMD.0, 3);
    assert_eq!(psp_gfx_cmd_id::GFX_CMD_ID_SETUP_TMR.0, 5);
    assert_eq!(psp_gfx_cmd_id::GFX_CMD_ID_LOAD_IP_FW.0, 6);
    assert_eq!(psp_gfx_cmd_id::GFX_CMD_ID_DESTROY_TMR.0, 7);
    assert_eq!(psp_gfx_cmd_id::GFX_CMD_ID_LOAD_TOC.0, 0x20);
    assert_eq!(psp_gfx_cmd_id::GFX_CMD_ID_AUTOLOAD_RLC.0, 0x21);
    assert_eq!(psp_gfx_cmd_id::GFX_CMD_ID_BOOT_CFG.0, 0x22);
    assert_eq!(psp_gfx_crtl_cmd_id::GFX_CTRL_CMD_ID_INIT_RBI_RING.0, 0x10000);
    assert_eq!(psp_gfx_crtl_cmd_id::GFX_CTRL_CMD_ID_INIT_GPCOM_RING.0, 0x20000);
    assert_eq!(psp_gfx_crtl_cmd_id::GFX_CTRL_CMD_ID_DESTROY_RINGS.0, 0x30000);
    assert_eq!(psp_gfx_crtl_cmd_id::GFX_CTRL_CMD_ID_MODE1_RST.0, 0x70000);
    assert_eq!(psp_ring_type::PSP_RING_TYPE__KM.0, 2);
    assert_eq!(psp_bootloader_cmd::PSP_BL__LOAD_KEY_DATABASE.0, 0x80000);
    assert_eq!(psp_bootloader_cmd::PSP_BL__LOAD_TOS_SPL_TABLE.0, 0x1000_0000);
    assert_eq!(psp_bootloader_cmd::PSP_BL__LOAD_SYSDRV.0, 0x10000);
    assert_eq!(psp_bootloader_cmd::PSP_BL__LOAD_SOCDRV.0, 0xB0000);
    assert_eq!(psp_bootloader_cmd::PSP_BL__LOAD_INTFDRV.0, 0xD0000);
    assert_eq!(psp_bootloader_cmd::PSP_BL__LOAD_DBGDRV.0, 0xC0000);
    assert_eq!(psp_bootloader_cmd::PSP_BL__LOAD_RASDRV.0, 0xE0000);
    assert_eq!(psp_bootloader_cmd::PSP_BL__LOAD_IPKEYMGRDRV.0, 0xF0000);
    assert_eq!(psp_bootloader_cmd::PSP_BL__LOAD_SOSDRV.0, 0x20000);
    // §3.2 firmware types.
    let t = [
        (psp_gfx_fw_type::GFX_FW_TYPE_SMU, 18),
        (psp_gfx_fw_type::GFX_FW_TYPE_SDMA_UCODE_TH0, 71),
        (psp_gfx_fw_type::GFX_FW_TYPE_SDMA_UCODE_TH1, 72),
        (psp_gfx_fw_type::GFX_FW_TYPE_RS64_PFP, 87),
        (psp_gfx_fw_type::GFX_FW_TYPE_RS64_ME, 88),
        (psp_gfx_fw_type::GFX_FW_TYPE_RS64_MEC, 89),
        (psp_gfx_fw_type::GFX_FW_TYPE_RS64_PFP_P0_STACK, 90),
        (psp_gfx_fw_type::GFX_FW_TYPE_RS64_ME_P0_STACK, 92),
        (psp_gfx_fw_type::GFX_FW_TYPE_RS64_MEC_P0_STACK, 94),
        (psp_gfx_fw_type::GFX_FW_TYPE_IMU_I, 68),
        (psp_gfx_fw_type::GFX_FW_TYPE_IMU_D, 69),
        (psp_gfx_fw_type::GFX_FW_TYPE_RLC_IRAM, 26),
        (psp_gfx_fw_type::GFX_FW_TYPE_RLC_DRAM_BOOT, 48),
        (psp_gfx_fw_type::GFX_FW_TYPE_RLC_P, 25),
        (psp_gfx_fw_type::GFX_FW_TYPE_RLC_V, 7),
        (psp_gfx_fw_type::GFX_FW_TYPE_RLC_G, 8),
        (psp_gfx_fw_type::GFX_FW_TYPE_CP_MEC, 4),
        (psp_gfx_fw_type::GFX_FW_TYPE_CP_MEC_ME1, 5),
        (psp_gfx_fw_type::GFX_FW_TYPE_SDMA0, 9),
        (psp_gfx_fw_type::GFX_FW_TYPE_SDMA1, 10),
    ];
    for (ty, v) in t {
        assert_eq!(ty.0, v, "{:?}", ty.name());
    }
    // §2.7 step 3 / §8 check (3): 1024-byte command buffer, response at +864, frame 64 bytes.
    assert_eq!(psp_gfx_cmd_resp::SIZE, 1024);
    assert_eq!(psp_gfx_cmd_resp::cmd_id.offset, 8);
    assert_eq!(psp_gfx_cmd_resp::cmd::OFFSET, 28);
    assert_eq!(psp_gfx_cmd_resp::resp::OFFSET, 864);
    assert_eq!(psp_gfx_cmd_resp::resp::tmr_size.offset, 864 + 16);
    assert_eq!(psp_gfx_rb_frame::SIZE, 64);
    assert_eq!(psp_gfx_rb_frame::fence_value.offset, 20);
    assert_eq!(psp_gfx_rb_frame::vmid.offset, 32);
}

/// §2.10: MQD dword positions and the HQD register block they mirror; §2.12 doorbells.
#[test]
fn mqd_and_doorbells() {
    use mqd::*;
    for (base_lo, active, wptr_hi, size) in [
        (
            v11_compute_mqd::cp_mqd_base_addr_lo,
            v11_compute_mqd::cp_hqd_active,
            v11_compute_mqd::cp_hqd_pq_wptr_hi,
            v11_compute_mqd::SIZE,
        ),
        (
            v12_compute_mqd::cp_mqd_base_addr_lo,
            v12_compute_mqd::cp_hqd_active,
            v12_compute_mqd::cp_hqd_pq_wptr_hi,
            v12_compute_mqd::SIZE,
        ),
    ] {
        assert_eq!(base_lo.offset, 0x80 * 4);
        assert_eq!(active.offset, 0x82 * 4);
        assert_eq!(wptr_hi.offset, 0xB7 * 4);
        assert!(size >= 0xB8 * 4);
    }
    for (mqd_base, wptr_hi) in [
        (gc_11_0_0::regCP_MQD_BASE_ADDR, gc_11_0_0::regCP_HQD_PQ_WPTR_HI),
        (gc_12_0_0::regCP_MQD_BASE_ADDR, gc_12_0_0::regCP_HQD_PQ_WPTR_HI),
    ] {
        assert_eq!((mqd_base.offset, wptr_hi.offset), (0x1fa9, 0x1fe0));
        // The block is exactly as long as MQD dwords 0x80..=0xB7.
        assert_eq!(wptr_hi.offset - mqd_base.offset, 0xB7 - 0x80);
    }
    use doorbell::AMDGPU_NAVI10_DOORBELL_ASSIGNMENT as D;
    assert_eq!(D::AMDGPU_NAVI10_DOORBELL_MEC_RING0.0, 3);
    assert_eq!(D::AMDGPU_NAVI10_DOORBELL_sDMA_ENGINE0.0, 0x100);
}

/// §5.1 PM4 opcodes and field positions; §5.2 dispatch registers.
#[test]
fn pm4_packets_and_dispatch_registers() {
    use pm4::*;
    let ops = [
        (PACKET3_SET_SH_REG, 0x76),
        (PACKET3_SET_UCONFIG_REG, 0x79),
        (PACKET3_ACQUIRE_MEM, 0x58),
        (PACKET3_RELEASE_MEM, 0x49),
        (PACKET3_WAIT_REG_MEM, 0x3C),
        (PACKET3_DISPATCH_DIRECT, 0x15),
        (PACKET3_EVENT_WRITE, 0x46),
        (PACKET3_INDIRECT_BUFFER, 0x3F),
        (PACKET3_NOP, 0x10),
        (PACKET3_COPY_DATA, 0x40),
        (PACKET3_PRED_EXEC, 0x23),
    ];
    for (op, v) in ops {
        assert_eq!(op.0, v);
    }
    assert_eq!(PACKET3_SET_SH_REG_START, 0x2C00);
    assert_eq!(PACKET3_SET_UCONFIG_REG_START, 0xC000);
    let gcr = [
        (PACKET3_ACQUIRE_MEM_GCR_CNTL_GLI_INV, 0),
        (PACKET3_ACQUIRE_MEM_GCR_CNTL_GLM_WB, 4),
        (PACKET3_ACQUIRE_MEM_GCR_CNTL_GLM_INV, 5),
        (PACKET3_ACQUIRE_MEM_GCR_CNTL_GLK_WB, 6),
        (PACKET3_ACQUIRE_MEM_GCR_CNTL_GLK_INV, 7),
        (PACKET3_ACQUIRE_MEM_GCR_CNTL_GLV_INV, 8),
        (PACKET3_ACQUIRE_MEM_GCR_CNTL_GL1_INV, 9),
        (PACKET3_ACQUIRE_MEM_GCR_CNTL_GL2_INV, 14),
        (PACKET3_ACQUIRE_MEM_GCR_CNTL_GL2_WB, 15),
        (PACKET3_RELEASE_MEM_DATA_SEL, 29),
        (PACKET3_RELEASE_MEM_INT_SEL, 24),
        (PACKET3_RELEASE_MEM_DST_SEL, 16),
        (PACKET3_RELEASE_MEM_EVENT_INDEX, 8),
    ];
    for (f, shift) in gcr {
        assert_eq!(f.0, shift);
    }
    assert_eq!(PACKET3_RELEASE_MEM_GCR_GL2_WB, 1 << 21);
    assert_eq!(PACKET3_RELEASE_MEM_GCR_SEQ, 1 << 22);
    assert_eq!(soc21::VGT_EVENT_TYPE::CS_PARTIAL_FLUSH.0, 7);
    assert_eq!(soc21::VGT_EVENT_TYPE::CACHE_FLUSH_AND_INV_TS_EVENT.0, 0x14);
    assert_eq!(soc24::VGT_EVENT_TYPE::CS_PARTIAL_FLUSH.0, 7);
    assert_eq!(mec_release_mem_event_index_enum::event_index__mec_release_mem__end_of_pipe.0, 5);
    // Header encoding: type 3, count-1, opcode.
    assert_eq!(PACKET3_NOP.header(1), 0xC000_1000);

    let regs = [
        ("COMPUTE_DISPATCH_INITIATOR", 0x1ba0),
        ("COMPUTE_START_X", 0x1ba4),
        ("COMPUTE_NUM_THREAD_X", 0x1ba7),
        ("COMPUTE_PGM_LO", 0x1bac),
        ("COMPUTE_DISPATCH_SCRATCH_BASE_LO", 0x1bb0),
        ("COMPUTE_PGM_RSRC1", 0x1bb2),
        ("COMPUTE_PGM_RSRC2", 0x1bb3),
        ("COMPUTE_RESOURCE_LIMITS", 0x1bb5),
        ("COMPUTE_TMPRING_SIZE", 0x1bb8),
        ("COMPUTE_RESTART_X", 0x1bbb),
        ("COMPUTE_PGM_RSRC3", 0x1bc8),
        ("COMPUTE_USER_DATA_0", 0x1be0),
        ("COMPUTE_USER_DATA_15", 0x1bef),
    ];
    for table in [gc_11_0_0::REGISTERS, gc_12_0_0::REGISTERS] {
        for (name, off) in regs {
            let r =
                table.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!((r.base_idx, r.offset), (0, off), "{name}");
        }
    }
    assert_eq!(
        (gc_11_0_0::regGRBM_GFX_INDEX.base_idx, gc_11_0_0::regGRBM_GFX_INDEX.offset),
        (1, 0x2200)
    );
    assert_eq!(
        (gc_11_0_0::regSPI_CONFIG_CNTL.base_idx, gc_11_0_0::regSPI_CONFIG_CNTL.offset),
        (1, 0x2440)
    );
    // §5.2 "PGM_LO = 0x1260+0x1bac−0x2C00 = 0x20C" with the typical GC seg0 base.
    let gc_bases = [0x1260, 0xA000, 0x1C000, 0x2402C00];
    assert_eq!(
        gc_11_0_0::regCOMPUTE_PGM_LO.absolute(&gc_bases).map(|a| a - PACKET3_SET_SH_REG_START),
        Some(0x20C)
    );
    // §5.6: TMPRING WAVESIZE is 15 bits from bit 12 on gfx11, 18 bits on gfx12.
    assert_eq!(gc_11_0_0::COMPUTE_TMPRING_SIZE::WAVESIZE.mask, ((1 << 15) - 1) << 12);
    assert_eq!(gc_12_0_0::COMPUTE_TMPRING_SIZE::WAVESIZE.mask, ((1 << 18) - 1) << 12);
    // §2.9: RLC_RLCS_BOOTLOAD_STATUS.BOOTLOAD_COMPLETE is bit 31.
    assert_eq!(gc_11_0_0::RLC_RLCS_BOOTLOAD_STATUS::BOOTLOAD_COMPLETE.mask, 1 << 31);
}

/// §5.5 SDMA packets.
#[test]
fn sdma_packets() {
    use sdma_pkt::*;
    assert_eq!(
        [SDMA_OP_COPY, SDMA_OP_WRITE, SDMA_OP_INDIRECT, SDMA_OP_FENCE, SDMA_OP_TRAP],
        [1, 2, 4, 5, 6]
    );
    assert_eq!([SDMA_OP_POLL_REGMEM, SDMA_OP_TIMESTAMP, SDMA_OP_GCR_REQ], [8, 13, 17]);
    assert_eq!(SDMA_SUBOP_TIMESTAMP_GET_GLOBAL, 2);
    assert_eq!(SDMA_SUBOP_COPY_LINEAR, 0);
    assert_eq!(SDMA_PKT_COPY_LINEAR::HEADER_sub_op.shift, 8);
    assert_eq!(SDMA_PKT_COPY_LINEAR::COUNT_count.mask, (1 << 30) - 1);
    assert_eq!(SDMA_PKT_COPY_LINEAR::COUNT_count.dword, 1);
    assert_eq!(SDMA_PKT_COPY_LINEAR::DST_ADDR_HI_dst_addr_63_32.dword, 6);
    assert_eq!(SDMA_PKT_POLL_REGMEM::HEADER_func.shift, 28);
    assert_eq!(SDMA_PKT_POLL_REGMEM::HEADER_mem_poll.shift, 31);
    assert_eq!(SDMA_PKT_FENCE::HEADER_mtype.shift, 16);
    assert_eq!(SDMA_PKT_INDIRECT::HEADER_vmid.shift, 16);
}

/// §2.1 discovery constants and structure sizes; §3.2 firmware header sizes.
#[test]
fn discovery_and_firmware_structs() {
    use discovery::*;
    assert_eq!(BINARY_SIGNATURE, 0x28211407);
    assert_eq!(DISCOVERY_TABLE_SIGNATURE, 0x53445049);
    assert_eq!(HARVEST_TABLE_SIGNATURE, 0x56524148);
    assert_eq!(GC_TABLE_ID, 0x4347);
    assert_eq!(DISCOVERY_TMR_OFFSET, 64 << 10);
    assert_eq!(DISCOVERY_TMR_SIZE, 10 << 10);
    use hwid::*;
    assert_eq!(
        [GC_HWID, MMHUB_HWID, OSSSYS_HWID, HDP_HWID, SDMA0_HWID, SDMA1_HWID],
        [11, 34, 40, 41, 42, 43]
    );
    assert_eq!(
        [NBIF_HWID, MP1_HWID, MP0_HWID, SMUIO_HWID, UMC_HWID, DF_HWID, ATHUB_HWID],
        [108, 1, 255, 4, 150, 46, 35]
    );
    assert_eq!(binary_header::table_list::STRIDE, 8);
    assert_eq!(binary_header::table_list::COUNT, 6);
    assert_eq!(binary_header::binary_checksum.offset, 8);
    assert_eq!(binary_header::SIZE, 12 + 6 * 8);
    assert_eq!(die_header::SIZE, 4);
    assert_eq!(ip_v4::base_address.offset, 8);
    assert_eq!(ip_v4::sub_revision.shift, 0);
    assert_eq!(ip_v4::variant.shift, 4);
    assert_eq!(harvest_table::list::COUNT, 32);
    assert_eq!(gpu_info_header::SIZE, 12);
    use ucode::*;
    assert_eq!(common_firmware_header::SIZE, 32);
    assert_eq!(common_firmware_header::ucode_array_offset_bytes.offset, 24);
    assert_eq!(common_firmware_header::crc32.offset, 28);
    assert_eq!(psp_fw_bin_desc::SIZE, 16);
    assert_eq!(psp_firmware_header_v2_0::psp_fw_bin::OFFSET, 36);
    assert_eq!(psp_firmware_header_v2_1::psp_fw_bin::OFFSET, 40);
    assert_eq!(gfx_firmware_header_v2_0::ucode_start_addr_hi.offset, 32 + 6 * 4);
    assert_eq!(rlc_firmware_header_v2_0::SIZE, 32 + 18 * 4);
    assert_eq!(rlc_firmware_header_v2_1::SIZE, 32 + 18 * 4 + 13 * 4);
    assert_eq!(psp_fw_type::PSP_FW_TYPE_PSP_SOS.0, 1);
    assert_eq!(psp_fw_type::PSP_FW_TYPE_PSP_IPKEYMGR_DRV.0, 11);
}
