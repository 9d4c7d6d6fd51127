// The BPF side is compiled with scx's own builder: scx's headers, its
// vmlinux.h and clang ($BPF_CLANG, set to clang-19 in .cargo/config.toml).
fn main() {
    scx_cargo::BpfBuilder::new()
        .unwrap()
        .enable_skel("src/bpf/main.bpf.c", "bpf")
        .build()
        .unwrap();
}
