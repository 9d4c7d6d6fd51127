// The BPF sides, compiled with scx's builder: its vmlinux.h and libbpf
// headers, clang from $BPF_CLANG (clang-19, set in .cargo/config.toml),
// and a libbpf-rs skeleton each: the in-guest scheduling probe
// (src/probe/probe.bpf.c) and `record`'s recorder
// (src/record/record.bpf.c).
fn main() {
    for (source, name) in [
        ("src/probe/probe.bpf.c", "probe"),
        ("src/record/record.bpf.c", "record"),
    ] {
        scx_cargo::BpfBuilder::new()
            .unwrap()
            .enable_skel(source, name)
            .build()
            .unwrap();
    }
}
