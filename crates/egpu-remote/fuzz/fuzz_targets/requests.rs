//! Fuzz the remote protocol's decoders (requests the server parses, replies the client parses,
//! the connection prelude) with arbitrary bytes: every input is an error or a message, never a
//! panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    egpu_remote::wire::exercise(data);
});
