//! `cargo run -p inlet-wasm --example componentize -- IN.wasm OUT.wasm`: turn a core module
//! built by wit-bindgen into a component (what `inlet plugin build` does after cargo).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: componentize IN.wasm OUT.wasm");
        return ExitCode::from(2);
    };
    let result = std::fs::read(input)
        .map_err(|e| format!("{input}: {e}"))
        .and_then(|core| inlet_wasm::componentize::componentize(&core))
        .and_then(|c| std::fs::write(output, c).map_err(|e| format!("{output}: {e}")));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
