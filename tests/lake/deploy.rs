//! The files in `deploy/` against the real `inlet`: the Kubernetes manifests (security
//! context, busy handling, the project in the ConfigMap loads) and the Airflow DAG's task
//! (inlet's exit codes mapped to skip, fail-without-retry and retry).

use std::{path::Path, process::Command};

use inlet_testkit::{TestProject, lake::*};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

#[test]
fn kubernetes_manifests_are_locked_down_skip_busy_runs_and_carry_a_project_that_loads() {
    let Some(py) = outside_python() else { return };
    let dir = repo().join("deploy/kubernetes");
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("inlet.toml");
    // Every pod spec: non-root, no privilege escalation, read-only root, no capabilities,
    // the service account without a mounted token; the CronJob skips busy runs and fails
    // configuration errors without retries.
    let report = python(
        &py,
        &format!(
            r#"
import glob, json, sys, yaml
docs = []
for f in sorted(glob.glob({dir:?} + "/*.yaml")):
    docs += [(f, d) for d in yaml.safe_load_all(open(f)) if d]
kinds = sorted(d["kind"] for _, d in docs)
def pods(d):
    if d["kind"] == "CronJob":
        return [d["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if d["kind"] == "Deployment":
        return [d["spec"]["template"]["spec"]]
    return []
images = set()
for f, d in docs:
    for pod in pods(d):
        assert pod["serviceAccountName"] == "inlet", f
        assert pod["automountServiceAccountToken"] is False, f
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, f
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", f
        for c in pod["containers"]:
            images.add(c["image"])
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, f
            assert csc["readOnlyRootFilesystem"] is True, f
            assert csc["capabilities"]["drop"] == ["ALL"], f
            assert any(e.get("secretRef", {{}}).get("name") == "inlet-secrets" for e in c["envFrom"]), f
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), f
    if d["kind"] == "CronJob":
        job = d["spec"]["jobTemplate"]["spec"]
        args = job["template"]["spec"]["containers"][0]["args"]
        i = args.index("--if-busy")
        assert args[i + 1] == "skip", args
        rules = job["podFailurePolicy"]["rules"]
        assert all(r["action"] != "Ignore" for r in rules), rules
        assert any(r["action"] == "FailJob" and 2 in r["onExitCodes"]["values"] for r in rules), rules
    if d["kind"] == "ServiceAccount":
        assert "eks.amazonaws.com/role-arn" in d["metadata"]["annotations"]
    if d["kind"] == "ConfigMap":
        open({project:?}, "w").write(d["data"]["inlet.toml"])
    if d["kind"] == "Secret":
        secret_keys = sorted(d["stringData"])
print(json.dumps({{"kinds": kinds, "images": sorted(images), "secrets": secret_keys}}))
"#,
            dir = dir.display().to_string(),
            project = project.display().to_string(),
        ),
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    for kind in [
        "ConfigMap",
        "CronJob",
        "Deployment",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ] {
        assert!(
            report["kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == kind),
            "deploy/kubernetes has no {kind}: {report}"
        );
    }
    assert_eq!(report["images"].as_array().unwrap().len(), 1, "{report}");
    // The image is this version's, the one the Dockerfile builds (`-t ...:<version>`).
    let image = report["images"][0].as_str().unwrap();
    assert_eq!(
        image.rsplit_once(':').map(|(_, tag)| tag),
        Some(env!("CARGO_PKG_VERSION")),
        "the manifests name {image}, not this version's image"
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("-t {image} .")),
        "the Dockerfile's build command does not make {image}"
    );
    // The project of the ConfigMap loads with the real inlet, with the Secret's variables,
    // and the daemon would run both connections.
    let mut cmd = Command::new(inlet_testkit::project::inlet_bin());
    cmd.args(["--json", "-p"])
        .arg(&project)
        .args(["daemon", "--dry-run", "--count", "1"]);
    for key in report["secrets"].as_array().unwrap() {
        cmd.env(key.as_str().unwrap(), "x");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan.as_array().unwrap().len(), 2, "{plan}");
}

/// The Dockerfile: multi-stage, the runtime stage runs as the manifests' user (non-root,
/// uid and gid 10001) with the CLI as entrypoint, and the build context leaves out build
/// output and lakes.
#[test]
fn the_dockerfile_is_multi_stage_non_root_with_the_cli_as_entrypoint() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let runtime = &lines[stages[1]..];
    assert!(runtime.iter().any(|l| l.starts_with("COPY --from=build ")));
    assert!(runtime.contains(&"USER 10001:10001"), "{runtime:?}");
    assert!(
        runtime.contains(&r#"ENTRYPOINT ["/usr/local/bin/inlet"]"#),
        "{runtime:?}"
    );
    // What the manifests run as.
    for f in ["cronjob.yaml", "daemon.yaml"] {
        let m = std::fs::read_to_string(repo().join("deploy/kubernetes").join(f)).unwrap();
        assert!(
            m.contains("runAsUser: 10001") && m.contains("runAsGroup: 10001"),
            "{f}"
        );
    }
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for left_out in ["target", "lake", ".git"] {
        assert!(
            ignore.lines().any(|l| l == left_out),
            ".dockerignore: {left_out}"
        );
    }
}

#[test]
fn the_airflow_task_skips_busy_runs_and_does_not_retry_configuration_errors() {
    let Some(py) = outside_python() else { return };
    let p = TestProject::new("[connections.c.config.streams.a]\nglob = \"*.csv\"\n");
    std::fs::write(p.data("a.csv"), "id\n1\n").unwrap();
    let lease = p.lake().join("_inlet/connections/c/lease.json");
    let dag = repo().join("deploy/airflow/inlet_dag.py");
    // Airflow itself is not installed here: the few names the DAG imports from it are
    // stood in for, and the task's callable runs against the real inlet binary.
    let script = format!(
        r#"
import json, os, sys, types
class Skip(Exception): pass
class Fail(Exception): pass
def module(name, **attrs):
    m = types.ModuleType(name); m.__dict__.update(attrs); sys.modules[name] = m
class DAG:
    def __init__(self, *a, **k): self.k = k
    def __enter__(self): return self
    def __exit__(self, *a): return False
module("airflow")
module("airflow.sdk", DAG=DAG)
module("airflow.exceptions", AirflowSkipException=Skip, AirflowFailException=Fail)
module("airflow.providers"); module("airflow.providers.standard"); module("airflow.providers.standard.operators")
module("airflow.providers.standard.operators.python", PythonOperator=lambda **k: k)
os.environ["INLET_BIN"] = {bin:?}
os.environ["INLET_PROJECT"] = {project:?}
src = open({dag:?}).read()
g = {{"__name__": "inlet_dag"}}
exec(compile(src, {dag:?}, "exec"), g)
out = {{}}
g["sync"]("c"); out["ok"] = "ran"
os.makedirs(os.path.dirname({lease:?}), exist_ok=True)
open({lease:?}, "w").write('{{"holder":"w:1","run_id":"r","acquired_at":"2026-01-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z"}}')
try: g["sync"]("c"); out["busy"] = "ran"
except Skip as e: out["busy"] = "skip"
os.remove({lease:?})
try: g["sync"]("nope"); out["config"] = "ran"
except Fail: out["config"] = "fail"
print(json.dumps(out))
"#,
        bin = inlet_testkit::project::inlet_bin().display().to_string(),
        project = p.config_path().display().to_string(),
        dag = dag.display().to_string(),
        lease = lease.display().to_string(),
    );
    let out = python(&py, &script);
    let out: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(out["ok"], "ran");
    assert_eq!(out["busy"], "skip");
    assert_eq!(out["config"], "fail");
}
