//! The `manyi` binary: parse the command line, run, map the outcome to an
//! exit code. Everything else lives in the library.

/// mimalloc rather than the system allocator: polars allocates and frees
/// large buffers on every query, and glibc handing them back to the kernel
/// and faulting them in again made the same month's table vary from 0.10 s
/// to 0.28 s at province scale (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    manyi::cli::main()
}
