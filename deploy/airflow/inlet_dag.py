"""Run inlet syncs from Airflow: one task per connection, scheduled by Airflow.

State lives in the lake, so any worker can run any task; a task that finds the connection
busy (exit code 75) is skipped rather than failed.
"""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.exceptions import AirflowSkipException
from airflow.operators.python import PythonOperator
import subprocess

PROJECT = "/opt/inlet/inlet.toml"


def sync(connection: str) -> None:
    result = subprocess.run(
        ["inlet", "--project", PROJECT, "--json", "sync", connection],
        capture_output=True, text=True,
    )
    print(result.stdout)
    if result.returncode == 75:
        raise AirflowSkipException(result.stderr.strip())
    if result.returncode != 0:
        raise RuntimeError(f"inlet sync {connection} failed ({result.returncode}): {result.stderr.strip()}")


with DAG(
    dag_id="inlet_raw_layer",
    start_date=datetime(2026, 11, 1),
    schedule="*/30 * * * *",
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:
    for connection in ["shop_events", "orchestrator_exports"]:
        PythonOperator(task_id=f"sync_{connection}", python_callable=sync, op_args=[connection])
