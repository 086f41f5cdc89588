//! The server handle table and the calls JS makes once per message, registered by hand as
//! plain functions rather than `NativeServer` methods.
//!
//! A class method pays on every call for unwrapping `this` (a private-property lookup and a
//! type-tag check) and for napi-rs's borrow bookkeeping, a cost paid once per message.
//! These functions take the server's numeric handle instead, looked up in a per-thread table
//! (a server is only ever called from the JS thread that created it).
//!
//! `sendText` also writes the JS string's UTF-8 once, straight behind the frame header: into
//! the connection's send queue when the frame has to wait there anyway, else into a reused
//! per-thread buffer. No Rust `String`, no allocation per message.

use std::cell::RefCell;
use std::sync::Arc;

use napi::bindgen_prelude::{FromNapiValue, JsObjectValue, Object, Unknown};
use napi::{sys, Env, Error, Result};
use napi_derive::napi;

use crate::cork;
use crate::engine::Engine;
use crate::events::Batch;
use crate::frame::{self, opcode};
use crate::outbox::SendStatus;

thread_local! {
    /// Servers created on this thread, by handle (index); None once disposed.
    static ENGINES: RefCell<Vec<Option<Arc<Engine>>>> = const { RefCell::new(Vec::new()) };
    /// Where a frame is encoded before it is written or queued.
    static ENCODE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Most capacity the encode buffer keeps between messages.
const ENCODE_KEEP: usize = 256 * 1024;

/// Makes an engine reachable from this thread's fast calls; returns its handle.
pub fn register(engine: Arc<Engine>) -> u32 {
    ENGINES.with_borrow_mut(|engines| {
        let slot = engines.iter().position(Option::is_none).unwrap_or(engines.len());
        if slot == engines.len() {
            engines.push(None);
        }
        engines[slot] = Some(engine);
        slot as u32
    })
}

/// Forgets a handle (the server was disposed or collected); later fast calls with it do
/// nothing. Only while the handle still names `engine`: a slot may have been given to a newer
/// server since. Harmless when the thread's table is already gone (process exit).
pub fn unregister(handle: u32, engine: &Arc<Engine>) {
    let _ = ENGINES.try_with(|engines| {
        if let Ok(mut engines) = engines.try_borrow_mut() {
            if let Some(slot) = engines.get_mut(handle as usize) {
                if slot.as_ref().is_some_and(|e| Arc::ptr_eq(e, engine)) {
                    *slot = None;
                }
            }
        }
    });
}

fn engine(handle: u32) -> Option<Arc<Engine>> {
    ENGINES.with_borrow(|engines| engines.get(handle as usize).and_then(Clone::clone))
}

/// Sends the frame `fill` appends to `conn` (see `Conn::send_with`).
/// The result is counted in the metrics' `send()` results.
fn send_with(handle: u32, conn: u32, binary: bool, fill: impl FnOnce(&mut Vec<u8>) -> Option<usize>) -> u32 {
    let Some(engine) = engine(handle) else { return SendStatus::Dropped as u32 };
    let Some(conn) = engine.conns.get(&conn).map(|c| c.value().clone()) else {
        engine.metrics.send_result(SendStatus::Dropped as usize);
        return SendStatus::Dropped as u32;
    };
    ENCODE.with_borrow_mut(|scratch| {
        let status = conn.send_with(&engine.send, scratch, binary, fill);
        engine.metrics.send_result(status as usize);
        if scratch.capacity() > ENCODE_KEEP {
            *scratch = Vec::new();
        }
        status as u32
    })
}

/// Appends a text frame holding the JS string `value` to `out`; returns the payload length
/// (None when `value` is not a string).
///
/// The UTF-8 is written once, straight from the JS string, into room for its longest possible
/// form (3 bytes per UTF-16 unit). The header size follows from the string's length in UTF-16
/// units except near the 126 and 65,536 byte boundaries; only there is V8 asked for the exact
/// UTF-8 length first (which reads the string twice).
///
/// # Safety
/// `env` and `value` must be the live handles of the current callback.
unsafe fn append_js_text(out: &mut Vec<u8>, env: sys::napi_env, value: sys::napi_value) -> Option<usize> {
    let mut units = 0usize;
    // SAFETY: live handles (caller); a null buffer asks for the length only (in UTF-16 units,
    // which V8 knows without reading the string; in UTF-8 bytes).
    let status = unsafe { sys::napi_get_value_string_utf16(env, value, std::ptr::null_mut(), 0, &mut units) };
    if status != sys::Status::napi_ok {
        return None;
    }
    let room = units.checked_mul(3)?;
    let header_len = if room < 126 {
        2
    } else if units >= 126 && room <= usize::from(u16::MAX) {
        4
    } else if units > usize::from(u16::MAX) {
        10
    } else {
        let mut exact = 0usize;
        // SAFETY: as above.
        let status =
            unsafe { sys::napi_get_value_string_utf8(env, value, std::ptr::null_mut(), 0, &mut exact) };
        if status != sys::Status::napi_ok {
            return None;
        }
        frame::header_len(exact)
    };
    let start = out.len();
    out.extend_from_slice(&[0; 10][..header_len]);
    out.reserve(room + 1);
    let mut written = 0usize;
    // SAFETY: `reserve` made `room + 1` bytes of spare capacity; napi writes at most that many
    // (the UTF-8 and a NUL) and reports how many UTF-8 bytes it wrote.
    let status = unsafe {
        sys::napi_get_value_string_utf8(
            env,
            value,
            out.spare_capacity_mut().as_mut_ptr().cast(),
            room + 1,
            &mut written,
        )
    };
    if status != sys::Status::napi_ok || written > room {
        out.truncate(start);
        return None;
    }
    // SAFETY: the bytes up to the header's end were initialised above, the next `written` by napi.
    unsafe { out.set_len(start + header_len + written) };
    let (header, n) = frame::header(opcode::TEXT, written);
    if n != header_len {
        out.truncate(start);
        return None;
    }
    out[start..start + n].copy_from_slice(&header[..n]);
    Some(written)
}

// `sendText` and `sendBinary` are plain napi callbacks, not `#[napi]` functions: napi-rs wraps
// every `#[napi]` call in its borrow-tracking scope, a cost paid on every message sent. They
// take (handle, conn, data) and return the `SendStatus` number; a wrong argument (the facade
// checks them first) counts as a dropped send, never a crash.

/// The callback's first three arguments, and the two numbers among them.
///
/// # Safety
/// `env` and `info` must be the current callback's.
unsafe fn args3(env: sys::napi_env, info: sys::napi_callback_info) -> Option<(u32, u32, sys::napi_value)> {
    let mut argc = 3usize;
    let mut argv = [std::ptr::null_mut(); 3];
    let (mut handle, mut conn) = (0u32, 0u32);
    // SAFETY: `argv` has room for `argc` values; the numbers are read from live handles.
    let ok = unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ) == sys::Status::napi_ok
            && argc >= 3
            && sys::napi_get_value_uint32(env, argv[0], &mut handle) == sys::Status::napi_ok
            && sys::napi_get_value_uint32(env, argv[1], &mut conn) == sys::Status::napi_ok
    };
    ok.then_some((handle, conn, argv[2]))
}

/// The status number as a JS value.
///
/// # Safety
/// `env` must be the current callback's.
unsafe fn status_value(env: sys::napi_env, status: u32) -> sys::napi_value {
    let mut out = std::ptr::null_mut();
    // SAFETY: live env; on failure `out` stays null, which napi treats as `undefined`.
    unsafe { sys::napi_create_uint32(env, status, &mut out) };
    out
}

/// `sendText(handle, conn, text)`: queues a text frame. 0 sent, 1 buffered, 2 dropped.
unsafe extern "C" fn send_text(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: napi calls this with the live env and callback info.
    let status = match unsafe { args3(env, info) } {
        // SAFETY: `data` is a live handle of this call.
        Some((handle, conn, data)) => {
            send_with(handle, conn, false, |buf| unsafe { append_js_text(buf, env, data) })
        }
        None => SendStatus::Dropped as u32,
    };
    // SAFETY: as above.
    unsafe { status_value(env, status) }
}

/// `sendBinary(handle, conn, bytes)`: queues a binary frame from a Uint8Array (copied before
/// returning). 0 sent, 1 buffered, 2 dropped.
unsafe extern "C" fn send_binary(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: napi calls this with the live env and callback info.
    unsafe { send_bytes(env, info, opcode::BINARY) }
}

/// `sendTextBytes(handle, conn, bytes)`: queues a text frame whose payload is the UTF-8 in a
/// Uint8Array (ws's `send(buffer, { binary: false })`); invalid sequences go out as U+FFFD, so
/// a text frame always holds valid UTF-8. 0 sent, 1 buffered, 2 dropped.
unsafe extern "C" fn send_text_bytes(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: napi calls this with the live env and callback info.
    unsafe { send_bytes(env, info, opcode::TEXT) }
}

/// A frame of `op` from the Uint8Array third argument, as `sendBinary` and `sendTextBytes` take it.
///
/// # Safety
/// `env` and `info` must be the current callback's.
unsafe fn send_bytes(env: sys::napi_env, info: sys::napi_callback_info, op: u8) -> sys::napi_value {
    // SAFETY: the caller passes the live env and callback info.
    let status = match unsafe { args3(env, info) } {
        Some((handle, conn, data)) => {
            let mut kind = sys::TypedarrayType::int8_array;
            let (mut len, mut ptr, mut buffer, mut offset) =
                (0usize, std::ptr::null_mut(), std::ptr::null_mut(), 0usize);
            // SAFETY: live handles; napi fails (not crashes) for a value that is no typed array.
            let ok = unsafe {
                sys::napi_get_typedarray_info(
                    env,
                    data,
                    &mut kind,
                    &mut len,
                    &mut ptr,
                    &mut buffer,
                    &mut offset,
                ) == sys::Status::napi_ok
            };
            if !ok || kind != sys::TypedarrayType::uint8_array || (ptr.is_null() && len > 0) {
                SendStatus::Dropped as u32
            } else {
                let bytes: &[u8] = if len == 0 {
                    &[]
                } else {
                    // SAFETY: napi reports the view's first element and its length in bytes; the
                    // array stays alive (and unmoved) for the duration of this call.
                    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
                };
                let text = (op == opcode::TEXT && std::str::from_utf8(bytes).is_err())
                    .then(|| String::from_utf8_lossy(bytes).into_owned());
                let payload = text.as_deref().map_or(bytes, str::as_bytes);
                send_with(handle, conn, op == opcode::BINARY, |buf| {
                    frame::encode_into(buf, op, payload);
                    Some(payload.len())
                })
            }
        }
        None => SendStatus::Dropped as u32,
    };
    // SAFETY: as above.
    unsafe { status_value(env, status) }
}

/// Adds `sendText`, `sendBinary` and `sendTextBytes` to the module's exports.
#[napi(module_exports)]
pub fn fast_exports(mut exports: Object, env: Env) -> Result<()> {
    type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;
    let callbacks: [(&str, Callback); 3] =
        [("sendText", send_text), ("sendBinary", send_binary), ("sendTextBytes", send_text_bytes)];
    for (name, callback) in callbacks {
        let mut function = std::ptr::null_mut();
        // SAFETY: the env of module registration; the name is passed with its length.
        let status = unsafe {
            sys::napi_create_function(
                env.raw(),
                name.as_ptr().cast(),
                name.len() as isize,
                Some(callback),
                std::ptr::null_mut(),
                &mut function,
            )
        };
        if status != sys::Status::napi_ok {
            return Err(Error::from_reason(format!("could not create {name}")));
        }
        // SAFETY: `function` was just created in this env.
        let value = unsafe { Unknown::from_napi_value(env.raw(), function)? };
        exports.set_named_property(name, value)?;
    }
    Ok(())
}

/// Takes queued events (at most `events::MAX_BATCH`); an empty batch means the queue is drained.
///
/// Sends made while JS handles a batch are corked: each connection's frames are written with
/// one syscall when the next `pollEvents()` (or `uncork()`) comes.
#[napi]
pub fn poll_events(handle: u32) -> Batch {
    cork::uncork();
    let Some(engine) = engine(handle) else {
        return crate::events::EventQueue::empty_batch();
    };
    let taken = engine.events.take();
    if !taken.is_empty() {
        engine.metrics.batch_events.observe(taken.events.len() as u64);
        cork::cork();
    }
    engine.events.encode(taken)
}

/// Writes everything corked since the last `pollEvents()`; JS calls it whenever it stops
/// handling events (the queue is drained, or it yields to the event loop).
#[napi]
pub fn uncork() {
    cork::uncork();
}
