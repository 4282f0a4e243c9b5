//! `guerrilla-async-std`: Guerrilla SMTPd on async-std. See `--help`.

fn main() -> std::process::ExitCode {
    proto::io::cli::main(frontend_async_std::AsyncStd, "guerrilla-async-std")
}
