//! The whole conformance suite against the smol frontend.

testsuite::conformance!(frontend_smol::start);
