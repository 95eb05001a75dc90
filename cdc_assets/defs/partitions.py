"""Dynamic partitions ``pipelines``: one key per ``public.pipelines`` name.

Keys are added by the launch sensor at run time, so a new row needs no code reload and loading the
definitions never reads the control database.
"""

import dagster as dg

PIPELINES_PARTITIONS_NAME = "pipelines"

PIPELINES = dg.DynamicPartitionsDefinition(name=PIPELINES_PARTITIONS_NAME)
