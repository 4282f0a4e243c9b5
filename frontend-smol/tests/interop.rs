//! The interop tests (real outside programs against the `guerrilla-smol` binary). They
//! are ignored by default; `.ci/run` installs the programs and runs them.

testsuite::interop!(env!("CARGO_BIN_EXE_guerrilla-smol"));
