//! The MQTT CONNECT packet (MQTT 3.1 and 3.1.1), read and written by the broker's front door
//! ([`super::front`]): it authenticates a client from its CONNECT, then hands the broker a
//! copy carrying the node's internal credentials instead of the client's.
//!
//! Layout: fixed header `0x10` and the remaining length (1–4 bytes, 7 bits each); protocol
//! name (`MQTT`, or `MQIsdp` for 3.1) and level; connect flags (user name, password, will
//! retain, will QoS, will, clean session; bit 0 reserved); keep-alive; then the client id,
//! the will topic and message when the will flag is set, the user name and the password,
//! each a 2-byte length and its bytes. MQTT 5 (level 5) is not read: the embedded broker
//! speaks 3.1.1.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest CONNECT accepted: real ones are a few hundred bytes.
pub const MAX_CONNECT_BYTES: usize = 16 * 1024;

const CONNECT: u8 = 0x10;
const USERNAME_FLAG: u8 = 0x80;
const PASSWORD_FLAG: u8 = 0x40;
const WILL_FLAG: u8 = 0x04;
const RESERVED_FLAG: u8 = 0x01;

/// Why bytes are not a CONNECT this door accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// More bytes are needed (the caller reads on).
    #[error("incomplete CONNECT")]
    Incomplete,
    #[error("not a CONNECT packet: {0}")]
    Malformed(&'static str),
    /// A protocol level other than 3 or 4 (CONNACK code 1).
    #[error("MQTT protocol level {0} is not supported (use MQTT 3.1.1)")]
    UnsupportedLevel(u8),
    #[error("the CONNECT packet is larger than {MAX_CONNECT_BYTES} bytes")]
    TooLarge,
}

/// A parsed CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol_name: Bytes,
    pub level: u8,
    /// The connect flags without the user name and password bits.
    flags: u8,
    pub keep_alive: u16,
    pub client_id: Bytes,
    /// Will topic and message.
    will: Option<(Bytes, Bytes)>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
}

impl Connect {
    /// Parses the CONNECT at the start of `buffer`; returns it and the bytes it took.
    pub fn parse(buffer: &[u8]) -> Result<(Connect, usize), ConnectError> {
        let Some(&first) = buffer.first() else {
            return Err(ConnectError::Incomplete);
        };
        if first != CONNECT {
            return Err(ConnectError::Malformed("the first packet must be CONNECT"));
        }
        let (length, length_bytes) = remaining_length(&buffer[1..])?;
        let total = 1 + length_bytes + length;
        if total > MAX_CONNECT_BYTES {
            return Err(ConnectError::TooLarge);
        }
        if buffer.len() < total {
            return Err(ConnectError::Incomplete);
        }
        let mut body = &buffer[1 + length_bytes..total];
        let protocol_name = field(&mut body)?;
        let level = byte(&mut body)?;
        let valid_name = match level {
            4 => &protocol_name[..] == b"MQTT",
            3 => &protocol_name[..] == b"MQIsdp",
            5 => return Err(ConnectError::UnsupportedLevel(level)),
            _ => false,
        };
        if !valid_name {
            return Err(ConnectError::UnsupportedLevel(level));
        }
        let flags = byte(&mut body)?;
        if flags & RESERVED_FLAG != 0 {
            return Err(ConnectError::Malformed("the reserved connect flag is set"));
        }
        if flags & PASSWORD_FLAG != 0 && flags & USERNAME_FLAG == 0 && level == 4 {
            return Err(ConnectError::Malformed("a password without a user name"));
        }
        if body.remaining() < 2 {
            return Err(ConnectError::Malformed("no keep-alive"));
        }
        let keep_alive = body.get_u16();
        let client_id = field(&mut body)?;
        let will = match flags & WILL_FLAG != 0 {
            true => Some((field(&mut body)?, field(&mut body)?)),
            false => None,
        };
        let username = match flags & USERNAME_FLAG != 0 {
            true => Some(
                String::from_utf8(field(&mut body)?.to_vec())
                    .map_err(|_| ConnectError::Malformed("the user name is not UTF-8"))?,
            ),
            false => None,
        };
        let password = match flags & PASSWORD_FLAG != 0 {
            true => Some(field(&mut body)?),
            false => None,
        };
        if body.has_remaining() {
            return Err(ConnectError::Malformed("bytes after the payload"));
        }
        let flags = flags & !(USERNAME_FLAG | PASSWORD_FLAG);
        let connect = Connect {
            protocol_name,
            level,
            flags,
            keep_alive,
            client_id,
            will,
            username,
            password,
        };
        Ok((connect, total))
    }

    /// This CONNECT with another user name and password.
    pub fn with_credentials(&self, username: &str, password: &[u8]) -> Connect {
        Connect {
            username: Some(username.to_string()),
            password: Some(Bytes::copy_from_slice(password)),
            ..self.clone()
        }
    }

    /// The packet's bytes.
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::new();
        put_field(&mut body, &self.protocol_name);
        body.put_u8(self.level);
        let mut flags = self.flags;
        if self.username.is_some() {
            flags |= USERNAME_FLAG;
        }
        if self.password.is_some() {
            flags |= PASSWORD_FLAG;
        }
        body.put_u8(flags);
        body.put_u16(self.keep_alive);
        put_field(&mut body, &self.client_id);
        if let Some((topic, message)) = &self.will {
            put_field(&mut body, topic);
            put_field(&mut body, message);
        }
        if let Some(username) = &self.username {
            put_field(&mut body, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_field(&mut body, password);
        }
        let mut packet = BytesMut::with_capacity(body.len() + 5);
        packet.put_u8(CONNECT);
        let mut length = body.len();
        loop {
            let mut digit = (length % 128) as u8;
            length /= 128;
            if length > 0 {
                digit |= 0x80;
            }
            packet.put_u8(digit);
            if length == 0 {
                break;
            }
        }
        packet.put_slice(&body);
        packet.freeze()
    }
}

/// CONNACK return codes (MQTT 3.1.1 section 3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnackCode {
    UnacceptableProtocolVersion = 1,
    BadUserNameOrPassword = 4,
    NotAuthorized = 5,
}

/// A CONNACK refusing the connection.
pub fn connack(code: ConnackCode) -> [u8; 4] {
    [0x20, 0x02, 0x00, code as u8]
}

fn remaining_length(bytes: &[u8]) -> Result<(usize, usize), ConnectError> {
    let mut value = 0usize;
    for (index, byte) in bytes.iter().take(4).enumerate() {
        value += usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    match bytes.len() >= 4 {
        true => Err(ConnectError::Malformed("the remaining length has more than 4 bytes")),
        false => Err(ConnectError::Incomplete),
    }
}

fn byte(body: &mut &[u8]) -> Result<u8, ConnectError> {
    match body.has_remaining() {
        true => Ok(body.get_u8()),
        false => Err(ConnectError::Malformed("the packet ends early")),
    }
}

fn field(body: &mut &[u8]) -> Result<Bytes, ConnectError> {
    if body.remaining() < 2 {
        return Err(ConnectError::Malformed("the packet ends early"));
    }
    let length = usize::from(body.get_u16());
    if body.remaining() < length {
        return Err(ConnectError::Malformed("a field is longer than the packet"));
    }
    let value = Bytes::copy_from_slice(&body[..length]);
    body.advance(length);
    Ok(value)
}

fn put_field(out: &mut BytesMut, value: &[u8]) {
    // Fields come from a parsed packet (at most MAX_CONNECT_BYTES) or the node's own
    // credentials: they fit in 16 bits.
    out.put_u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
    out.put_slice(&value[..value.len().min(usize::from(u16::MAX))]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A CONNECT as mosquitto_pub 2 sends it: `-u sensor -P secret -i pub1`, clean session,
    /// keep-alive 60, with a will.
    fn sample() -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC6, 0, 60];
        for field in [&b"pub1"[..], b"will/topic", b"bye", b"sensor", b"secret"] {
            body.extend_from_slice(&(field.len() as u16).to_be_bytes());
            body.extend_from_slice(field);
        }
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend(body);
        packet
    }

    #[test]
    fn a_connect_is_read_and_written_back_byte_for_byte() {
        let bytes = sample();
        let (connect, used) = Connect::parse(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(connect.username.as_deref(), Some("sensor"));
        assert_eq!(connect.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(&connect.client_id[..], b"pub1");
        assert_eq!(connect.keep_alive, 60);
        assert_eq!(connect.encode(), bytes);

        let internal = connect.with_credentials("minitrue", b"0123456789");
        let (again, _) = Connect::parse(&internal.encode()).unwrap();
        assert_eq!(again.username.as_deref(), Some("minitrue"));
        assert_eq!(again.will, connect.will);
        assert_eq!(again.client_id, connect.client_id);
    }

    #[test]
    fn partial_foreign_and_oversized_packets_are_told_apart() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert_eq!(Connect::parse(&bytes[..cut]).unwrap_err(), ConnectError::Incomplete);
        }
        let mut v5 = bytes.clone();
        v5[8] = 5;
        assert_eq!(Connect::parse(&v5).unwrap_err(), ConnectError::UnsupportedLevel(5));
        let publish = [0x30, 0x02, 0x00, 0x00];
        assert!(matches!(Connect::parse(&publish), Err(ConnectError::Malformed(_))));
        let huge = [0x10, 0xff, 0xff, 0x7f];
        assert_eq!(Connect::parse(&huge).unwrap_err(), ConnectError::TooLarge);
        let endless = [0x10, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(Connect::parse(&endless), Err(ConnectError::Malformed(_))));
        let mut reserved = bytes.clone();
        reserved[9] |= 1;
        assert!(matches!(Connect::parse(&reserved), Err(ConnectError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((connect, used)) = Connect::parse(&bytes) {
                prop_assert!(used <= bytes.len());
                let encoded = connect.encode();
                prop_assert_eq!(Connect::parse(&encoded).map(|(c, _)| c), Ok(connect));
            }
        }

        #[test]
        fn any_credentials_round_trip(user in "\\PC{0,40}", password in proptest::collection::vec(any::<u8>(), 0..100)) {
            let (connect, _) = Connect::parse(&sample()).unwrap();
            let changed = connect.with_credentials(&user, &password);
            let (parsed, _) = Connect::parse(&changed.encode()).unwrap();
            prop_assert_eq!(parsed.username.as_deref(), Some(user.as_str()));
            prop_assert_eq!(parsed.password.as_deref(), Some(&password[..]));
        }
    }
}
