//! Schedulers that are only a BPF object (registry kind `bpf_object`): the
//! harness itself opens the object, loads it, attaches its `struct_ops`
//! map, and reads the exit info from its `uei` variable, with libbpf-rs.
//!
//! Runs in the guest (loading needs the sched_ext kernel); [`check`] also
//! runs on the host, before a VM boots, to refuse an object without a
//! `struct_ops` map. Knows libbpf and `struct user_exit_info`; nothing
//! about VMs or the lifecycle around it.

use std::path::Path;

use anyhow::Result;
use libbpf_rs::btf::types::{Array, Composite, DataSec, Enum, Enum64, Int, MemberAttr, Var};
use libbpf_rs::btf::{Btf, HasSize, ReferencesType};
use libbpf_rs::{AsRawLibbpf, Link, MapCore, MapFlags, MapType, Object, ObjectBuilder, OpenObject};
use serde::{Deserialize, Serialize};

use crate::error::{fail, Failure};

/// The name of the object's first `struct_ops` map, or a classified error
/// saying why the file is not a scheduler object. Does not load anything.
pub fn check(path: &Path) -> Result<String> {
    let open = ObjectBuilder::default().open_file(path).map_err(|e| {
        fail(
            Failure::BadInput,
            format!(
                "{} is not a BPF object libbpf can open: {e}\n  fix: pass the .bpf.o that clang -target bpf produced",
                path.display()
            ),
        )
    })?;
    let found = open
        .maps()
        .find(|m| m.map_type() == MapType::StructOps)
        .map(|m| m.name().to_string_lossy().into_owned());
    found.ok_or_else(|| {
        fail(
            Failure::BadInput,
            format!(
                "{} has no struct_ops map, so it is not a sched_ext scheduler\n  \
                 fix: define the scheduler with SCX_OPS_DEFINE(...) (a SEC(\".struct_ops.link\") variable)",
                path.display()
            ),
        )
    })
}

/// Why loading or attaching failed, with libbpf's own lines (the verifier's
/// log when the verifier refused a program).
#[derive(Debug)]
pub struct LoadFailure {
    pub message: String,
    pub log: Vec<String>,
}

/// `struct user_exit_info` as the BPF side recorded it in `ops.exit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// `enum scx_exit_kind`; 0 while the scheduler runs.
    pub kind: i64,
    pub exit_code: i64,
    pub reason: String,
    pub msg: String,
}

/// A loaded and attached BPF scheduler; detached when dropped.
pub struct Attached {
    object: Object,
    link: Option<Link>,
}

/// Opens, loads and attaches the object's first `struct_ops` map.
pub fn load_and_attach(path: &Path) -> std::result::Result<Attached, LoadFailure> {
    let (result, log) = crate::bpflog::capture(|| try_load_and_attach(path));
    result.map_err(|message| LoadFailure { message, log })
}

fn try_load_and_attach(path: &Path) -> std::result::Result<Attached, String> {
    let name = check(path).map_err(|e| format!("{e:#}"))?;
    let mut open = ObjectBuilder::default()
        .open_file(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    init_enums(&mut open)?;
    let mut object = open
        .load()
        .map_err(|e| format!("loading {}: {e}", path.display()))?;
    let mut map = object
        .maps_mut()
        .find(|m| m.name().to_string_lossy() == name)
        .ok_or_else(|| format!("struct_ops map {name} vanished after load"))?;
    let link = map
        .attach_struct_ops()
        .map_err(|e| format!("attaching struct_ops map {name}: {e}"))?;
    Ok(Attached {
        object,
        link: Some(link),
    })
}

/// What a scheduler's own loader does with `SCX_ENUM_INIT` before load:
/// since 6.13 the scx headers (`enums.autogen.bpf.h`) turn constants such
/// as `SCX_DSQ_LOCAL` into `.rodata` variables (`__SCX_DSQ_LOCAL`) that user
/// space fills from the kernel's BTF, so that one object runs on kernels
/// whose enum values differ. Left at 0, `SCX_DSQ_LOCAL` is DSQ 0 and the
/// kernel ejects the scheduler ("non-existent DSQ 0x0", seen on 7.3). Every
/// `.rodata` variable named `__NAME` whose NAME is an enumerator of the
/// running kernel's BTF gets that enumerator's value; an object built
/// against 6.12's headers has none and is left as it is.
fn init_enums(open: &mut OpenObject) -> std::result::Result<(), String> {
    let wanted: Vec<(String, usize, usize)> = {
        let Some(btf) = Btf::from_bpf_object(unsafe { open.as_libbpf_object().as_ref() })
            .ok()
            .flatten()
        else {
            return Ok(());
        };
        let Some(sec) = btf.type_by_name::<DataSec>(".rodata") else {
            return Ok(());
        };
        sec.iter()
            .filter_map(|info| {
                let var: Var = btf.type_by_id(info.ty)?;
                let name = var.name()?.to_str()?.strip_prefix("__")?.to_string();
                Some((name, info.offset as usize, info.size))
            })
            .collect()
    };
    if wanted.is_empty() {
        return Ok(());
    }
    let kernel = Btf::from_vmlinux().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    let mut values: std::collections::HashMap<String, i128> = Default::default();
    for e in kernel.type_by_kind::<Enum>() {
        for m in e.iter() {
            if let Some(n) = m.name.and_then(|n| n.to_str()) {
                values.insert(n.to_string(), m.value.into());
            }
        }
    }
    for e in kernel.type_by_kind::<Enum64>() {
        for m in e.iter() {
            if let Some(n) = m.name.and_then(|n| n.to_str()) {
                values.insert(n.to_string(), m.value);
            }
        }
    }
    let Some(mut rodata) = open.maps_mut().find(|m| {
        let n = m.name().to_string_lossy();
        n == ".rodata" || n.ends_with(".rodata")
    }) else {
        return Ok(());
    };
    let Some(bytes) = rodata.initial_value_mut() else {
        return Ok(());
    };
    for (name, offset, size) in wanted {
        let Some(v) = values.get(&name) else { continue };
        let le = (*v as u64).to_le_bytes();
        if size <= 8 {
            if let Some(slot) = bytes.get_mut(offset..offset + size) {
                slot.copy_from_slice(&le[..size]);
            }
        }
    }
    Ok(())
}

impl Attached {
    /// Detaches (the kernel then disables the scheduler). Idempotent.
    pub fn detach(&mut self) {
        self.link.take();
    }

    /// The exit info, once the BPF side has recorded one (kind != 0).
    pub fn exit_info(&self) -> Option<ExitInfo> {
        read_uei(&self.object).filter(|u| u.kind != 0)
    }
}

/// Finds `uei` in the object's `.data` section through its BTF and reads
/// `kind`, `exit_code`, `reason` and `msg` by member name, so both the 6.12
/// layout and scx's later one (with `exit_cpu`) are read right.
fn read_uei(object: &Object) -> Option<ExitInfo> {
    let btf = Btf::from_bpf_object(unsafe { object.as_libbpf_object().as_ref() })
        .ok()
        .flatten()?;
    let sec: DataSec = btf.type_by_name(".data")?;
    let (var_offset, var_ty) = sec.iter().find_map(|info| {
        let var: Var = btf.type_by_id(info.ty)?;
        (var.name()?.to_str()? == "uei").then(|| (info.offset as usize, var.referenced_type()))
    })?;
    let strukt = Composite::try_from(var_ty.skip_mods_and_typedefs()).ok()?;
    let data = object.maps().find(|m| {
        let n = m.name().to_string_lossy();
        n == ".data" || n.ends_with(".data")
    })?;
    let bytes = data.lookup(&0u32.to_ne_bytes(), MapFlags::ANY).ok()??;
    let field = |name: &str| -> Option<(usize, usize)> {
        strukt.iter().find_map(|m| {
            if m.name?.to_str()? != name {
                return None;
            }
            let MemberAttr::Normal { offset } = m.attr else {
                return None;
            };
            // Members read here are integers or char arrays.
            let ty = btf
                .type_by_id::<libbpf_rs::btf::BtfType>(m.ty)?
                .skip_mods_and_typedefs();
            let size = match Int::try_from(ty) {
                Ok(i) => i.size(),
                Err(ty) => Array::try_from(ty).ok()?.capacity(),
            };
            Some((var_offset + offset as usize / 8, size))
        })
    };
    let int = |name: &str| -> Option<i64> {
        let (at, size) = field(name)?;
        let b = bytes.get(at..at + size)?;
        Some(match size {
            4 => i32::from_ne_bytes(b.try_into().ok()?) as i64,
            8 => i64::from_ne_bytes(b.try_into().ok()?),
            _ => return None,
        })
    };
    let text = |name: &str| -> String {
        field(name)
            .and_then(|(at, size)| bytes.get(at..at + size))
            .map(|b| {
                let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
                String::from_utf8_lossy(&b[..end]).into_owned()
            })
            .unwrap_or_default()
    };
    Some(ExitInfo {
        kind: int("kind")?,
        exit_code: int("exit_code").unwrap_or(0),
        reason: text("reason"),
        msg: text("msg"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_objects_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.bpf.o");
        std::fs::write(&f, b"not an ELF file").unwrap();
        let err = check(&f).unwrap_err();
        assert_eq!(crate::classify(&err), Some(Failure::BadInput));
        assert!(format!("{err}").contains("not a BPF object"), "{err}");
    }
}
