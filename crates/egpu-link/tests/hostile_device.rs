//! Whatever the device answers, the protocol layer and the fabric bring-up return (with a
//! value or a typed error): no panic, no endless loop. Inputs come from a fixed-seed PRNG so
//! the run is the same every time; the fuzz target (crates/egpu-link/fuzz) explores further.

use egpu_link::hostile::{exercise, Reached};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_device_answers_never_panic() {
    let mut rng = XorShift(0x005E_ED0F_E640);
    for _ in 0..300 {
        let len = (rng.next() % 4096) as usize;
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(&input);
    }
}

#[test]
fn a_plausible_start_then_garbage_never_panics() {
    // A link that is up and a bridge that answers its vendor ID, then random config space:
    // this reaches deep into the bus walk, BAR sizing and capability lists.
    let mut rng = XorShift(42);
    let mut deepest = Vec::new();
    for _ in 0..300 {
        // Outcome byte 9 = "transfer succeeded"; then the E4 LTSSM reply (L0), the F0 OUT of the
        // bridge's vendor-ID read, and its F0 IN reply (1b21:2461, verdict "completed").
        let mut input = vec![9, 0x78, 9, 9, 0x21, 0x1B, 0x61, 0x24, 0];
        let len = (rng.next() % 8192) as usize;
        input.extend((0..len).map(|_| {
            // Mostly zeros (as absent functions and unused registers read), some noise.
            let value = rng.next();
            if value.is_multiple_of(64) {
                (value >> 8) as u8
            } else {
                9
            }
        }));
        deepest.push(exercise(&input));
    }
    eprintln!(
        "fabric up: {}, GPU found: {}",
        deepest.iter().filter(|&&r| r >= Reached::FabricUp).count(),
        deepest.iter().filter(|&&r| r == Reached::GpuFound).count()
    );
    // The inputs must really reach the bus walk, not stop at the open.
    assert!(deepest.iter().all(|&r| r >= Reached::Opened), "{deepest:?}");
    let up = deepest.iter().filter(|&&r| r >= Reached::FabricUp).count();
    assert!(
        up >= 30,
        "only {up} of 300 walks completed; the inputs no longer reach the deep paths"
    );
}
