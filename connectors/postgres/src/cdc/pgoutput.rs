//! Decoding the messages of the `pgoutput` plugin (protocol version 1, values in binary
//! form), as carried in the `XLogData` of a logical replication stream.
//!
//! Begin and Commit are decoded by the replication client; this module decodes what is
//! between them: relations, rows, truncates. A value is borrowed from the message.

use std::fmt;

/// One column of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// A TOASTed value the update did not change: pgoutput does not send it.
    UnchangedToast,
    /// The value in the type's binary send format.
    Binary(&'a [u8]),
    /// The value as text (a type without a binary send function).
    Text(&'a [u8]),
}

/// A relation's description, sent before its first row in a session and after it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The table's oid.
    pub oid: u32,
    /// Its schema.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `REPLICA IDENTITY`: `d` default (the key), `n` nothing, `f` full, `i` an index.
    pub replica_identity: u8,
    /// The columns, in the order of the tuples.
    pub columns: Vec<RelColumn>,
}

/// A column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelColumn {
    /// Part of the replica identity.
    pub key: bool,
    /// Its name.
    pub name: String,
    /// Its type's oid.
    pub type_oid: u32,
    /// Its type modifier.
    pub type_mod: i32,
}

/// A decoded message.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A relation's description.
    Relation(Relation),
    /// A row inserted.
    Insert {
        /// The table.
        oid: u32,
        /// The new row.
        new: Vec<Value<'a>>,
    },
    /// A row updated.
    Update {
        /// The table.
        oid: u32,
        /// The old row: its key when the key changed (`K`), all of it under `REPLICA
        /// IDENTITY FULL` (`O`), else absent.
        old: Option<(u8, Vec<Value<'a>>)>,
        /// The new row.
        new: Vec<Value<'a>>,
    },
    /// A row deleted: its key (`K`), or all of it under `REPLICA IDENTITY FULL` (`O`).
    Delete {
        /// The table.
        oid: u32,
        /// `K` or `O`.
        kind: u8,
        /// The old row.
        old: Vec<Value<'a>>,
    },
    /// Tables truncated.
    Truncate {
        /// The tables.
        oids: Vec<u32>,
        /// `1` CASCADE, `2` RESTART IDENTITY.
        options: u8,
    },
    /// Anything else (a type, an origin, a logical message): nothing to land.
    Other(u8),
}

/// A message that could not be decoded: the stream is not what pgoutput sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed pgoutput message: {}", self.0)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                DecodeError(format!(
                    "{n} bytes wanted at offset {} of a {}-byte message",
                    self.pos,
                    self.data.len()
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }
    fn cstr(&mut self) -> Result<String, DecodeError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| DecodeError("a string without its terminator".into()))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Value<'a>>, DecodeError> {
        let n = self.i16()?;
        if n < 0 {
            return Err(DecodeError(format!("a tuple of {n} columns")));
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::UnchangedToast,
                b'b' => {
                    let len = self.u32()? as usize;
                    Value::Binary(self.take(len)?)
                }
                b't' => {
                    let len = self.u32()? as usize;
                    Value::Text(self.take(len)?)
                }
                k => return Err(DecodeError(format!("a column of kind {:?}", k as char))),
            });
        }
        Ok(out)
    }
}

/// Decode one message.
pub fn decode(data: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut r = Reader { data, pos: 0 };
    let tag = r.u8()?;
    Ok(match tag {
        b'R' => {
            let oid = r.u32()?;
            let namespace = r.cstr()?;
            let name = r.cstr()?;
            let replica_identity = r.u8()?;
            let n = r.i16()?;
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let flags = r.u8()?;
                columns.push(RelColumn {
                    key: flags & 1 == 1,
                    name: r.cstr()?,
                    type_oid: r.u32()?,
                    type_mod: r.i32()?,
                });
            }
            Message::Relation(Relation {
                oid,
                // pgoutput sends an empty namespace for pg_catalog.
                namespace: if namespace.is_empty() {
                    "pg_catalog".into()
                } else {
                    namespace
                },
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let oid = r.u32()?;
            match r.u8()? {
                b'N' => Message::Insert {
                    oid,
                    new: r.tuple()?,
                },
                k => return Err(DecodeError(format!("an insert with tuple {:?}", k as char))),
            }
        }
        b'U' => {
            let oid = r.u32()?;
            let mut old = None;
            let mut k = r.u8()?;
            if k == b'K' || k == b'O' {
                old = Some((k, r.tuple()?));
                k = r.u8()?;
            }
            if k != b'N' {
                return Err(DecodeError(format!("an update with tuple {:?}", k as char)));
            }
            Message::Update {
                oid,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let oid = r.u32()?;
            let kind = r.u8()?;
            if kind != b'K' && kind != b'O' {
                return Err(DecodeError(format!(
                    "a delete with tuple {:?}",
                    kind as char
                )));
            }
            Message::Delete {
                oid,
                kind,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let n = r.u32()?;
            let options = r.u8()?;
            let oids = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Message::Truncate { oids, options }
        }
        other => Message::Other(other),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn relation() -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend(16384u32.to_be_bytes());
        m.extend(b"public\0orders\0d");
        m.extend(2i16.to_be_bytes());
        m.push(1);
        m.extend(b"id\0");
        m.extend(20u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        m.push(0);
        m.extend(b"note\0");
        m.extend(25u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        m
    }

    #[test]
    fn relations_and_rows_decode() {
        let rel = relation();
        let Message::Relation(r) = decode(&rel).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.oid, r.namespace.as_str(), r.name.as_str()),
            (16384, "public", "orders")
        );
        assert_eq!(r.columns.len(), 2);
        assert!(r.columns[0].key && !r.columns[1].key);
        assert_eq!(r.columns[1].type_oid, 25);

        let mut up = vec![b'U'];
        up.extend(16384u32.to_be_bytes());
        up.push(b'N');
        up.extend(2i16.to_be_bytes());
        up.push(b'b');
        up.extend(8u32.to_be_bytes());
        up.extend(7i64.to_be_bytes());
        up.push(b'u');
        assert_eq!(
            decode(&up).unwrap(),
            Message::Update {
                oid: 16384,
                old: None,
                new: vec![Value::Binary(&7i64.to_be_bytes()), Value::UnchangedToast],
            }
        );

        let mut tr = vec![b'T'];
        tr.extend(2u32.to_be_bytes());
        tr.push(0);
        tr.extend(1u32.to_be_bytes());
        tr.extend(2u32.to_be_bytes());
        assert_eq!(
            decode(&tr).unwrap(),
            Message::Truncate {
                oids: vec![1, 2],
                options: 0
            }
        );
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let rel = relation();
        for n in 1..rel.len() {
            assert!(decode(&rel[..n]).is_err(), "{n}");
        }
        let mut del = vec![b'D'];
        del.extend(1u32.to_be_bytes());
        del.push(b'K');
        del.extend(1i16.to_be_bytes());
        del.push(b'b');
        del.extend(u32::MAX.to_be_bytes());
        assert!(decode(&del).is_err());
        assert!(matches!(decode(b"Zabc").unwrap(), Message::Other(b'Z')));
    }
}
