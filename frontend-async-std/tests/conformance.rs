//! The whole conformance suite against the async-std frontend.

testsuite::conformance!(frontend_async_std::start);
