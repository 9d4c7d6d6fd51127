//! Fuzz target: see scx_harness::fuzz::console for what every input must get.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scx_harness::fuzz::console(data));
