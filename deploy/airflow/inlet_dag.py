"""Run inlet syncs from Airflow 3: one task per connection, scheduled by Airflow.

State lives in the lake, so any worker can run any task. inlet's exit codes decide what
Airflow does with a task:

- 0: done. With ``--if-busy skip`` a run that found the connection held by another run
  also exits 0; its JSON says ``"outcome": "skipped"`` and the task is marked skipped.
- 2: the configuration is wrong; retrying will not help, so the task fails at once.
- 4: the data landed but registering it in the catalog failed; retried.
- anything else (1, 75, 130): failed; retried as configured.

Set ``INLET_BIN`` and ``INLET_PROJECT`` in the worker's environment to override the
defaults below.
"""
import json
import os
import subprocess
from datetime import datetime, timedelta

from airflow.exceptions import AirflowFailException, AirflowSkipException
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

INLET = os.environ.get("INLET_BIN", "inlet")
PROJECT = os.environ.get("INLET_PROJECT", "/opt/inlet/inlet.toml")
CONNECTIONS = ["shop_events", "orchestrator_exports"]


def sync(connection: str) -> None:
    result = subprocess.run(
        [INLET, "--project", PROJECT, "--json", "sync", connection, "--if-busy", "skip"],
        capture_output=True,
        text=True,
    )
    print(result.stdout)
    if result.stderr:
        print(result.stderr)
    if result.returncode == 0:
        try:
            doc = json.loads(result.stdout)
        except ValueError:
            doc = {}
        if isinstance(doc, dict) and doc.get("outcome") == "skipped":
            raise AirflowSkipException(doc.get("message", "another run holds the connection"))
        return
    message = f"inlet sync {connection} failed ({result.returncode}): {result.stderr.strip()}"
    if result.returncode == 2:
        raise AirflowFailException(message)
    raise RuntimeError(message)


with DAG(
    dag_id="inlet_raw_layer",
    start_date=datetime(2026, 11, 1),
    schedule="*/30 * * * *",
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:
    for connection in CONNECTIONS:
        PythonOperator(task_id=f"sync_{connection}", python_callable=sync, op_args=[connection])
