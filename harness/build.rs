// The scheduling probe's BPF side (src/probe/probe.bpf.c), compiled with
// scx's builder: its vmlinux.h and libbpf headers, clang from $BPF_CLANG
// (clang-19, set in .cargo/config.toml), and a libbpf-rs skeleton.
fn main() {
    scx_cargo::BpfBuilder::new()
        .unwrap()
        .enable_skel("src/probe/probe.bpf.c", "probe")
        .build()
        .unwrap();
}
