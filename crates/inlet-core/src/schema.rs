//! Schema helpers shared by connectors and the lake.

use arrow_schema::{DataType, Field, Schema};
use sha2::{Digest, Sha256};

/// A stable fingerprint of a schema's column names, types and nullability (not its
/// metadata), written into every Parquet file so readers can group files by schema.
pub fn fingerprint(schema: &Schema) -> String {
    let mut hasher = Sha256::new();
    for field in schema.fields() {
        hash_field(&mut hasher, field);
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

fn hash_field(hasher: &mut Sha256, field: &Field) {
    hasher.update(field.name().as_bytes());
    hasher.update([0, u8::from(field.is_nullable())]);
    hash_type(hasher, field.data_type());
    hasher.update([0xff]);
}

fn hash_type(hasher: &mut Sha256, data_type: &DataType) {
    match data_type {
        DataType::Struct(fields) => {
            hasher.update(b"struct<");
            for f in fields {
                hash_field(hasher, f);
            }
            hasher.update(b">");
        }
        DataType::List(f) | DataType::LargeList(f) => {
            hasher.update(b"list<");
            hash_field(hasher, f);
            hasher.update(b">");
        }
        other => hasher.update(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_type_and_not_with_metadata() {
        let a = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        let b = Schema::new(vec![Field::new("id", DataType::Utf8, false)]);
        let c = a.clone().with_metadata(std::collections::HashMap::from([(
            "k".to_string(),
            "v".to_string(),
        )]));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&a).len(), 32);
    }
}
