//! Sealed gossip packets: every gossip datagram is encrypted and authenticated with the
//! cluster's gossip key, and a packet seen before is refused.
//!
//! A packet is `MTG1 | session (16) | counter (8) | sent at, ms since 1970 (8) | ciphertext |
//! tag (16)`, sealed with ChaCha20-Poly1305; the 36-byte header is authenticated, not
//! encrypted. Each sending socket picks a random session id when it opens and seals with a
//! key derived from the gossip key and that id, so its counter can start at zero without
//! ever repeating a nonce, across restarts too.
//!
//! Replays: a receiver keeps, per session, the highest counter and which of the 64 before it
//! arrived (as IPsec does), and refuses packets sent more than [`MAX_CLOCK_SKEW`] from its own
//! clock, so a session it has forgotten cannot be replayed either. A packet captured within
//! that time before the receiver restarted may be accepted once: it carries gossip state the
//! receiver already had, which chitchat ignores (state is versioned).

use std::collections::HashMap;
use std::time::Duration;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

use super::secret::subkey;
use crate::error::AuthError;
use crate::scram::fill_random;

/// The first bytes of every sealed packet.
pub const SEAL_MAGIC: [u8; 4] = *b"MTG1";
const SESSION_BYTES: usize = 16;
const HEADER_BYTES: usize = SEAL_MAGIC.len() + SESSION_BYTES + 8 + 8;
const TAG_BYTES: usize = 16;
/// Bytes a sealed packet has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = HEADER_BYTES + TAG_BYTES;
/// How far a packet's send time may be from the receiver's clock (nodes' clocks must agree
/// this well; NTP does far better).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// Sessions a receiver remembers at most (each sending socket of the cluster is one; a
/// session is forgotten once it has been silent for twice the skew).
pub const MAX_SESSIONS: usize = 4096;
/// How many packets of a session may arrive out of order.
const REPLAY_WINDOW: u64 = 64;

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a sealed packet (too short, or not starting with [`SEAL_MAGIC`]).
    Malformed,
    /// Does not open with this cluster's key: another secret or cluster id, or tampered.
    Forged,
    /// Opened, but seen before.
    Replayed,
    /// Opened, but sent too long ago (or in the future) by the receiver's clock.
    Stale,
    /// Opened, but the receiver already follows [`MAX_SESSIONS`] live sessions.
    TooManySessions,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::Malformed,
        Refusal::Forged,
        Refusal::Replayed,
        Refusal::Stale,
        Refusal::TooManySessions,
    ];

    /// The label of the refusal in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Forged => "forged",
            Refusal::Replayed => "replayed",
            Refusal::Stale => "stale",
            Refusal::TooManySessions => "too_many_sessions",
        }
    }
}

fn session_key(gossip_key: &[u8; 32], session: &[u8; SESSION_BYTES]) -> LessSafeKey {
    let mut purpose = b"gossip session ".to_vec();
    purpose.extend_from_slice(session);
    let key = subkey(gossip_key, &purpose);
    // A 32-byte key is what ChaCha20-Poly1305 takes, so this cannot fail.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key"))
}

fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; aead::NONCE_LEN];
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// Seals the packets one socket sends.
pub struct Sealer {
    session: [u8; SESSION_BYTES],
    key: LessSafeKey,
    counter: u64,
}

impl Sealer {
    /// A new session under `gossip_key` (from [`super::ClusterKeys::gossip`]).
    pub fn new(gossip_key: &[u8; 32]) -> Result<Sealer, AuthError> {
        let mut session = [0u8; SESSION_BYTES];
        fill_random(&mut session)?;
        Ok(Sealer { session, key: session_key(gossip_key, &session), counter: 0 })
    }

    /// Appends `plaintext`, sealed, to `out` (cleared first); `now_ms` is the wall clock.
    pub fn seal(&mut self, plaintext: &[u8], now_ms: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&SEAL_MAGIC);
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(plaintext);
        let (header, body) = out.split_at_mut(HEADER_BYTES);
        // Sealing fails only for inputs beyond 2^38 bytes, far beyond a datagram.
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(self.counter), Aad::from(&*header), body)
            .expect("a datagram-sized plaintext");
        out.extend_from_slice(tag.as_ref());
        self.counter += 1;
    }
}

struct Session {
    key: LessSafeKey,
    highest: u64,
    /// Bit `i`: counter `highest - 1 - i` arrived.
    earlier: u64,
    last_seen_ms: u64,
}

impl Session {
    /// Records `counter`; false when it arrived before or is too old to tell.
    fn accept(&mut self, counter: u64) -> bool {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.earlier = match shift {
                s if s > REPLAY_WINDOW => 0,
                REPLAY_WINDOW => 1 << (REPLAY_WINDOW - 1),
                s => (self.earlier << s) | (1 << (s - 1)),
            };
            self.highest = counter;
            return true;
        }
        let behind = self.highest - counter;
        if behind == 0 || behind > REPLAY_WINDOW {
            return false;
        }
        let bit = 1u64 << (behind - 1);
        if self.earlier & bit != 0 {
            return false;
        }
        self.earlier |= bit;
        true
    }
}

/// Opens the packets one socket receives, remembering sessions to refuse replays.
pub struct Opener {
    gossip_key: [u8; 32],
    sessions: HashMap<[u8; SESSION_BYTES], Session>,
}

impl Opener {
    pub fn new(gossip_key: &[u8; 32]) -> Opener {
        Opener { gossip_key: *gossip_key, sessions: HashMap::new() }
    }

    /// Opens `packet` into `out` (cleared first) if it is sealed with this cluster's key,
    /// fresh by `now_ms` and not seen before.
    pub fn open(&mut self, packet: &[u8], now_ms: u64, out: &mut Vec<u8>) -> Result<(), Refusal> {
        out.clear();
        if packet.len() < SEAL_OVERHEAD || packet[..SEAL_MAGIC.len()] != SEAL_MAGIC {
            return Err(Refusal::Malformed);
        }
        let (header, body) = packet.split_at(HEADER_BYTES);
        let field = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            u64::from_be_bytes(bytes)
        };
        let mut session_id = [0u8; SESSION_BYTES];
        session_id.copy_from_slice(&header[4..4 + SESSION_BYTES]);
        let counter = field(4 + SESSION_BYTES);
        let sent_ms = field(4 + SESSION_BYTES + 8);

        let known = self.sessions.get(&session_id);
        let fresh_key;
        let key = match known {
            Some(session) => &session.key,
            None => {
                fresh_key = session_key(&self.gossip_key, &session_id);
                &fresh_key
            }
        };
        out.extend_from_slice(body);
        let opened = key
            .open_in_place(nonce(counter), Aad::from(header), out)
            .map(|plaintext| plaintext.len());
        let Ok(length) = opened else {
            out.clear();
            return Err(Refusal::Forged);
        };
        out.truncate(length);

        let skew = MAX_CLOCK_SKEW.as_millis() as u64;
        if sent_ms.saturating_add(skew) < now_ms || sent_ms > now_ms.saturating_add(skew) {
            out.clear();
            return Err(Refusal::Stale);
        }
        let accepted = match self.sessions.get_mut(&session_id) {
            Some(session) => {
                session.last_seen_ms = now_ms;
                session.accept(counter)
            }
            None => {
                if self.sessions.len() >= MAX_SESSIONS {
                    self.forget_silent(now_ms);
                }
                if self.sessions.len() >= MAX_SESSIONS {
                    out.clear();
                    return Err(Refusal::TooManySessions);
                }
                let key = session_key(&self.gossip_key, &session_id);
                let session = Session { key, highest: counter, earlier: 0, last_seen_ms: now_ms };
                self.sessions.insert(session_id, session);
                true
            }
        };
        if !accepted {
            out.clear();
            return Err(Refusal::Replayed);
        }
        Ok(())
    }

    /// Sessions silent for twice the skew: their packets would be refused as stale anyway.
    fn forget_silent(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(2 * MAX_CLOCK_SKEW.as_millis() as u64);
        self.sessions.retain(|_, session| session.last_seen_ms >= horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000_000;

    fn key(byte: u8) -> [u8; 32] {
        [byte; 32]
    }

    #[test]
    fn sealed_packets_open_once_and_only_with_the_key() {
        let mut sealer = Sealer::new(&key(1)).unwrap();
        let mut opener = Opener::new(&key(1));
        let (mut packet, mut plain) = (Vec::new(), Vec::new());
        sealer.seal(b"syn", NOW, &mut packet);
        assert_eq!(packet.len(), 3 + SEAL_OVERHEAD);
        assert!(!packet.windows(3).any(|w| w == b"syn"), "the payload is encrypted");
        assert_eq!(Opener::new(&key(2)).open(&packet, NOW, &mut plain), Err(Refusal::Forged));
        opener.open(&packet, NOW, &mut plain).unwrap();
        assert_eq!(plain, b"syn");
        assert_eq!(opener.open(&packet, NOW, &mut plain), Err(Refusal::Replayed));
        assert!(plain.is_empty());

        let mut tampered = packet.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(opener.open(&tampered, NOW, &mut plain), Err(Refusal::Forged));
        let mut retimed = packet.clone();
        retimed[30] ^= 1;
        assert_eq!(Opener::new(&key(1)).open(&retimed, NOW, &mut plain), Err(Refusal::Forged));
        assert_eq!(opener.open(b"MTG1", NOW, &mut plain), Err(Refusal::Malformed));
        assert_eq!(opener.open(&[0; 80], NOW, &mut plain), Err(Refusal::Malformed));
    }

    #[test]
    fn old_packets_are_refused_even_by_a_receiver_that_forgot_them() {
        let mut sealer = Sealer::new(&key(1)).unwrap();
        let mut packet = Vec::new();
        sealer.seal(b"ack", NOW, &mut packet);
        let mut plain = Vec::new();
        let later = NOW + MAX_CLOCK_SKEW.as_millis() as u64 + 1;
        assert_eq!(Opener::new(&key(1)).open(&packet, later, &mut plain), Err(Refusal::Stale));
        let earlier = NOW - MAX_CLOCK_SKEW.as_millis() as u64 - 1;
        assert_eq!(Opener::new(&key(1)).open(&packet, earlier, &mut plain), Err(Refusal::Stale));
        Opener::new(&key(1)).open(&packet, NOW + 1000, &mut plain).unwrap();
    }

    #[test]
    fn packets_may_arrive_out_of_order_within_the_window() {
        let mut sealer = Sealer::new(&key(1)).unwrap();
        let packets: Vec<Vec<u8>> = (0..200)
            .map(|_| {
                let mut packet = Vec::new();
                sealer.seal(b"x", NOW, &mut packet);
                packet
            })
            .collect();
        let mut opener = Opener::new(&key(1));
        let mut plain = Vec::new();
        let (ok, replayed) = (Ok(()), Err(Refusal::Replayed));
        let arrivals = [
            (5, ok),
            (3, ok),
            (4, ok),
            (0, ok),
            (100, ok),
            (30, replayed), // more than 64 behind the highest: cannot tell, so refused
            (99, ok),
            (101, ok),
            (164, ok),
            (100, replayed), // 64 behind, and it came before
            (164, replayed),
        ];
        for (index, expected) in arrivals {
            assert_eq!(opener.open(&packets[index], NOW, &mut plain), expected, "packet {index}");
        }
    }

    proptest! {
        #[test]
        fn any_arrival_order_opens_each_packet_at_most_once(
            order in proptest::collection::vec(0usize..100, 0..300)
        ) {
            let mut sealer = Sealer::new(&key(7)).unwrap();
            let packets: Vec<Vec<u8>> = (0..100).map(|i| {
                let mut packet = Vec::new();
                sealer.seal(&[i as u8], NOW, &mut packet);
                packet
            }).collect();
            let mut opener = Opener::new(&key(7));
            let mut opened = std::collections::HashSet::new();
            let mut plain = Vec::new();
            for index in order {
                if opener.open(&packets[index], NOW, &mut plain).is_ok() {
                    prop_assert!(opened.insert(index), "packet {} opened twice", index);
                    prop_assert_eq!(&plain, &vec![index as u8]);
                }
            }
        }

        #[test]
        fn junk_is_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut plain = Vec::new();
            let mut with_magic = SEAL_MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            for packet in [bytes, with_magic] {
                prop_assert!(Opener::new(&key(1)).open(&packet, NOW, &mut plain).is_err());
            }
        }
    }
}
