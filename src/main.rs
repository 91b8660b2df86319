use std::process::ExitCode;

/// The AWS SDK's futures are large; reconciling several resources at once nests many of
/// them, so worker threads get more stack than tokio's 2 MiB default.
const THREAD_STACK_BYTES: usize = 16 * 1024 * 1024;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(statehouse::cli::run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let (code, message) = statehouse::cli::exit::report(&err);
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            ExitCode::from(code)
        }
    }
}
