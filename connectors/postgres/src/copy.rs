//! Parsing `COPY ... TO STDOUT (FORMAT binary)` as it streams, into record batches.
//!
//! The server sends one row per CopyData message, but the parser does not rely on it:
//! a row split across chunks is carried over.

use arrow_array::RecordBatch;

use crate::types::BatchBuilder;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The state of one COPY stream.
#[derive(Debug)]
pub struct CopyParser {
    builder: BatchBuilder,
    batch_rows: usize,
    header_done: bool,
    finished: bool,
    carry: Vec<u8>,
    /// Rows decoded in total.
    pub rows: u64,
}

impl CopyParser {
    /// A parser building batches of `batch_rows` rows.
    pub fn new(builder: BatchBuilder, batch_rows: usize) -> CopyParser {
        CopyParser {
            builder,
            batch_rows: batch_rows.max(1),
            header_done: false,
            finished: false,
            carry: Vec::new(),
            rows: 0,
        }
    }

    /// Feed one chunk; full batches are pushed to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if self.carry.is_empty() {
            let used = self.parse(chunk, out)?;
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.carry);
            data.extend_from_slice(chunk);
            let used = self.parse(&data, out)?;
            data.drain(..used);
            self.carry = data;
        }
        Ok(())
    }

    /// The stream ended: check the trailer and return the last partial batch.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, String> {
        if !self.finished {
            return Err(
                "the COPY stream ended without its trailer (connection lost mid-stream)".into(),
            );
        }
        if !self.carry.is_empty() {
            return Err("bytes after the COPY trailer".into());
        }
        if self.builder.rows() > 0 {
            Ok(Some(self.builder.finish()?))
        } else {
            Ok(None)
        }
    }

    /// Parse complete items of `data`; returns the bytes consumed.
    fn parse(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<usize, String> {
        let mut pos = 0;
        if !self.header_done {
            if data.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &data[..SIGNATURE.len()] != SIGNATURE {
                return Err("not a binary COPY stream".into());
            }
            let ext = be_u32(&data[SIGNATURE.len() + 4..]) as usize;
            let end = SIGNATURE.len() + 8 + ext;
            if data.len() < end {
                return Ok(0);
            }
            pos = end;
            self.header_done = true;
        }
        let width = self.builder.width();
        while pos + 2 <= data.len() {
            let fields = i16::from_be_bytes([data[pos], data[pos + 1]]);
            if fields == -1 {
                self.finished = true;
                return Ok(pos + 2);
            }
            if fields as usize != width {
                return Err(format!(
                    "a row with {fields} fields where {width} were selected"
                ));
            }
            // Check the row is complete before decoding any of it.
            let mut p = pos + 2;
            let mut complete = true;
            for _ in 0..width {
                if p + 4 > data.len() {
                    complete = false;
                    break;
                }
                let len = be_u32(&data[p..]) as i32;
                p += 4;
                if len > 0 {
                    p += len as usize;
                }
            }
            if !complete || p > data.len() {
                break;
            }
            let mut p = pos + 2;
            for i in 0..width {
                let len = be_u32(&data[p..]) as i32;
                p += 4;
                if len < 0 {
                    self.builder.push(i, None)?;
                } else {
                    let end = p + len as usize;
                    self.builder.push(i, Some(&data[p..end]))?;
                    p = end;
                }
            }
            self.builder.end_row();
            self.rows += 1;
            pos = p;
            if self.builder.rows() >= self.batch_rows {
                out.push(self.builder.finish()?);
            }
        }
        Ok(pos)
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::types::{ColumnType, Kind};
    use arrow_array::{Array, Int64Array, StringArray};

    fn stream() -> Vec<u8> {
        let mut v = SIGNATURE.to_vec();
        v.extend(0u32.to_be_bytes());
        v.extend(0u32.to_be_bytes());
        for i in 0..5i64 {
            v.extend(2i16.to_be_bytes());
            v.extend(8i32.to_be_bytes());
            v.extend(i.to_be_bytes());
            if i == 3 {
                v.extend((-1i32).to_be_bytes());
            } else {
                let s = format!("row{i}");
                v.extend((s.len() as i32).to_be_bytes());
                v.extend(s.as_bytes());
            }
        }
        v.extend((-1i16).to_be_bytes());
        v
    }

    fn columns() -> Vec<ColumnType> {
        vec![
            ColumnType {
                name: "id".into(),
                pg_type: "bigint".into(),
                kind: Kind::Int8,
                cast_to_text: false,
                nullable: false,
                type_id: None,
            },
            ColumnType {
                name: "s".into(),
                pg_type: "text".into(),
                kind: Kind::Text,
                cast_to_text: false,
                nullable: true,
                type_id: None,
            },
        ]
    }

    #[test]
    fn rows_split_across_any_chunking() {
        let data = stream();
        for step in [1, 3, 7, data.len()] {
            let mut p = CopyParser::new(BatchBuilder::new(&columns(), 2), 2);
            let mut out = Vec::new();
            for c in data.chunks(step) {
                p.feed(c, &mut out).unwrap();
            }
            if let Some(b) = p.finish().unwrap() {
                out.push(b);
            }
            assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
            let ids: Vec<i64> = out
                .iter()
                .flat_map(|b| {
                    let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    a.values().to_vec()
                })
                .collect();
            assert_eq!(ids, vec![0, 1, 2, 3, 4]);
            let s = out[1]
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            assert!(s.is_null(1));
        }
    }

    #[test]
    fn a_stream_cut_short_is_an_error() {
        let data = stream();
        let mut p = CopyParser::new(BatchBuilder::new(&columns(), 2), 2);
        let mut out = Vec::new();
        p.feed(&data[..data.len() - 5], &mut out).unwrap();
        assert!(p.finish().unwrap_err().contains("without its trailer"));
    }
}
