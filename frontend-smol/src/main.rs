//! `guerrilla-smol`: Guerrilla SMTPd on smol. See `--help`.

fn main() -> std::process::ExitCode {
    proto::io::cli::main(frontend_smol::Smol::global(), "guerrilla-smol")
}
