//! The `guerrilla-smol` binary's command line, configuration errors, signals and log file.

testsuite::binary!(env!("CARGO_BIN_EXE_guerrilla-smol"));
