//! Turning the core module that `cargo build --target wasm32-unknown-unknown` makes of a
//! wit-bindgen plugin into a component (what the host loads).

/// Encode a core wasm module (with wit-bindgen's component-type section) as a component.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .map_err(|e| format!("not a wit-bindgen module: {e:#}"))?
        .validate(true)
        .encode()
        .map_err(|e| format!("cannot make a component: {e:#}"))
}
