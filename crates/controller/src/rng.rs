//! The controller's seeded random source: SplitMix64, so a seed replays a run bit for bit
//! (design 9: no unseeded randomness in the pure cores). Used for replica placement, topic ids
//! and a generated cluster id.

use uuid::Uuid;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, full-period, good enough for placement.
#[derive(Clone, Debug)]
pub struct ControllerRng {
    state: u64,
}

impl ControllerRng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`; `bound` must be positive.
    pub fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "below(0)");
        // Multiply-shift: unbiased enough for placement (bias < bound / 2^64).
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle (Java's `Collections.shuffle` order of swaps).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// A random version-4 UUID that is neither nil nor one of Kafka's reserved ids
    /// (`Uuid.ZERO_UUID`, `Uuid.ONE_UUID`, used as sentinels).
    pub fn uuid(&mut self) -> Uuid {
        loop {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
            bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
            let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
            if id.as_u128() > 1 {
                return id;
            }
        }
    }
}

/// Kafka's text form of a `Uuid` (URL-safe base64 without padding, 22 characters), used for
/// a generated cluster id. (fjord-storage has the same function; the controller must not
/// depend on storage, and fjord-metadata does not export one yet.)
pub fn kafka_uuid_string(id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in id.as_bytes().chunks(3) {
        let mut buf = [0u8; 3];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from(buf[0]) << 16 | u32::from(buf[1]) << 8 | u32::from(buf[2]);
        for i in 0..chunk.len() + 1 {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let mut a = ControllerRng::new(42);
        let mut b = ControllerRng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            let x = a.below(7);
            assert_eq!(x, b.below(7));
            assert!(x < 7);
        }
        assert_ne!(
            ControllerRng::new(1).next_u64(),
            ControllerRng::new(2).next_u64()
        );
    }

    #[test]
    fn uuids_are_v4_and_cluster_ids_have_kafka_length() {
        let mut r = ControllerRng::new(7);
        let id = r.uuid();
        assert_eq!(id.get_version_num(), 4);
        assert_ne!(id, r.uuid());
        let text = kafka_uuid_string(id);
        assert_eq!(text.len(), 22);
        assert!(text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(kafka_uuid_string(Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = ControllerRng::new(3);
        let mut v: Vec<i32> = (0..20).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }
}
