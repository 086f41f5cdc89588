//! Node-API functions the unit-test binary links against but never calls.
//!
//! In the addon, Node provides every `napi_*` symbol when it loads the library. The test binary
//! (`cargo test --lib`) runs without Node, so code the tests reach only through drop glue (an
//! engine's wake-up callback slot, always empty in tests) would leave the link unresolved. Each
//! stub reports a failure, as Node does for a call it cannot make.
#![cfg(test)]

use napi::sys;

/// Never reached: no test installs a wake-up callback.
#[no_mangle]
extern "C" fn napi_release_threadsafe_function(
    _func: sys::napi_threadsafe_function,
    _mode: sys::napi_threadsafe_function_release_mode,
) -> sys::napi_status {
    sys::Status::napi_generic_failure
}
