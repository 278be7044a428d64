# Reads every Parquet file under each folder given (argv[1], a JSON list of folders, or of
# {"folder", "ddl", "table", "view", "key"} to read through the table that inlet's printed
# Spark DDL creates, and count the current-state view's rows and keys) with Spark
# (spark.read.parquet, one local session for all) and with pyarrow, renders each row as
# canonical JSON and prints, per folder, the columns, the row count, the rows where the two
# differ, or Spark's error. Timestamps compare as their microseconds since the epoch and
# dates as days (Python's datetime cannot hold +-infinity, i64::MAX), floats as their
# repr (NaN, Infinity), decimals in plain notation, binary as hex, maps as sorted pairs.
import datetime, decimal, json, math, os, sys, time

os.environ["TZ"] = "UTC"
time.tzset()
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.types as pt

import tempfile

inputs = [f if isinstance(f, dict) else {"folder": f} for f in json.loads(sys.argv[1])]
warehouse = tempfile.mkdtemp(prefix="inlet-spark-")


def files(folder):
    out = []
    for root, _, names in os.walk(folder):
        out += [os.path.join(root, n) for n in names if n.endswith(".parquet")]
    return sorted(out)


def plain_arrow(t):
    if pt.is_timestamp(t):
        assert t.unit == "us", f"a timestamp stored in {t.unit}, not microseconds"
        return pa.int64()
    if pt.is_date32(t):
        return pa.int32()
    if pt.is_struct(t):
        return pa.struct([pa.field(f.name, plain_arrow(f.type), f.nullable) for f in t])
    if pt.is_list(t) or pt.is_large_list(t):
        return pa.list_(pa.field("element", plain_arrow(t.value_type)))
    if pt.is_map(t):
        return pa.map_(plain_arrow(t.key_type), plain_arrow(t.item_type))
    return t


def canon_scalar(v):
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return repr(v)
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if isinstance(v, datetime.time):
        return v.isoformat()
    raise TypeError(f"no canonical form for {type(v)}: {v!r}")


def canon_arrow(v, t):
    if v is None:
        return None
    if pt.is_struct(t):
        return {f.name: canon_arrow(v[f.name], f.type) for f in t}
    if pt.is_map(t):
        pairs = [[canon_arrow(k, t.key_type), canon_arrow(x, t.item_type)] for k, x in v]
        return sorted(pairs, key=json.dumps)
    if pt.is_list(t) or pt.is_large_list(t):
        return [canon_arrow(x, t.value_type) for x in v]
    return canon_scalar(v)


def arrow_rows(folder):
    paths = files(folder)
    schema = pa.unify_schemas([ds.dataset(p, format="parquet").schema for p in paths])
    table = ds.dataset(paths, format="parquet", schema=schema).to_table()
    plain = pa.schema([pa.field(f.name, plain_arrow(f.type), f.nullable) for f in table.schema])
    table = table.cast(plain)
    types = {f.name: f.type for f in table.schema}
    rows = [
        json.dumps({k: canon_arrow(v, types[k]) for k, v in r.items()}, sort_keys=True)
        for r in table.to_pylist()
    ]
    return table.column_names, sorted(rows)


t0 = time.time()
from pyspark.sql import SparkSession, functions as F, types as T

spark = (
    SparkSession.builder.master("local[1]")
    .appName("inlet-test")
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.driver.memory", "512m")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.shuffle.partitions", "1")
    .config("spark.sql.warehouse.dir", warehouse)
    .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
started = time.time() - t0


def plain_spark(c, dt):
    if isinstance(dt, T.TimestampType):
        return F.unix_micros(c)
    if isinstance(dt, T.TimestampNTZType):
        # Under the UTC session zone the local time is the instant.
        return F.unix_micros(c.cast("timestamp"))
    if isinstance(dt, T.DateType):
        return F.unix_date(c)
    if isinstance(dt, T.StructType):
        inner = F.struct(*[plain_spark(c[f.name], f.dataType).alias(f.name) for f in dt.fields])
        return F.when(c.isNull(), F.lit(None)).otherwise(inner)
    if isinstance(dt, T.ArrayType):
        return F.transform(c, lambda x: plain_spark(x, dt.elementType))
    if isinstance(dt, T.MapType):
        return F.transform_values(c, lambda k, x: plain_spark(x, dt.valueType))
    return c


def canon_spark(v, dt):
    if v is None:
        return None
    if isinstance(dt, T.StructType):
        return {f.name: canon_spark(v[f.name], f.dataType) for f in dt.fields}
    if isinstance(dt, T.MapType):
        pairs = [[canon_spark(k, dt.keyType), canon_spark(x, dt.valueType)] for k, x in v.items()]
        return sorted(pairs, key=json.dumps)
    if isinstance(dt, T.ArrayType):
        return [canon_spark(x, dt.elementType) for x in v]
    return canon_scalar(v)


def run_ddl(text):
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--"))
    for stmt in text.split(";\n"):
        if stmt.strip():
            spark.sql(stmt.strip().rstrip(";"))


def spark_rows(entry):
    if entry.get("ddl"):
        run_ddl(entry["ddl"])
        df = spark.table(entry["table"])
        # The partition column comes from the folder names, which pyarrow is not given.
        assert df.filter(F.col("extracted_at").isNull()).count() == 0, "rows without a partition"
        df = df.drop("extracted_at")
    else:
        df = (
            spark.read.option("recursiveFileLookup", "true")
            .option("mergeSchema", "true")
            .parquet(entry["folder"])
        )
    df = df.select(*[plain_spark(F.col(f"`{f.name}`"), f.dataType).alias(f.name) for f in df.schema.fields])
    fields = {f.name: f.dataType for f in df.schema.fields}
    rows = [
        json.dumps({k: canon_spark(v, fields[k]) for k, v in r.asDict().items()}, sort_keys=True)
        for r in df.collect()
    ]
    return df.columns, sorted(rows)


def current_view(given):
    if not given.get("view"):
        return None
    run_ddl(given["view"])
    view = given["table"] + "_current"
    keys = ", ".join(f"`{k}`" for k in given["key"])
    rows = spark.sql(f"SELECT count(*) AS n FROM {view}").collect()[0]["n"]
    distinct = spark.sql(f"SELECT count(*) AS n FROM (SELECT DISTINCT {keys} FROM {given['table']})").collect()[0]["n"]
    return [rows, distinct]


out = []
for given in inputs:
    folder = given["folder"]
    columns, arrow = arrow_rows(folder)
    entry = {"folder": folder, "columns": columns, "rows": len(arrow), "mismatches": [], "spark_error": None, "current": None}
    try:
        spark_columns, sparked = spark_rows(given)
        entry["current"] = current_view(given)
    except Exception as e:  # Spark's refusal is the answer for this folder
        java = getattr(e, "java_exception", None)
        text = java.toString() if java is not None else str(e)
        entry["spark_error"] = text.strip().splitlines()[0][:800]
        out.append(entry)
        continue
    if sorted(spark_columns) != sorted(columns):
        entry["mismatches"].append(f"columns: spark {spark_columns}, pyarrow {columns}")
    if len(sparked) != len(arrow):
        entry["mismatches"].append(f"rows: spark {len(sparked)}, pyarrow {len(arrow)}")
    for a, s in zip(arrow, sparked):
        if a != s:
            entry["mismatches"].append(f"pyarrow {a}\n  spark {s}")
        if len(entry["mismatches"]) > 5:
            break
    out.append(entry)
spark.stop()
print(json.dumps({"session_secs": started, "total_secs": time.time() - t0, "folders": out}))
