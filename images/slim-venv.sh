#!/bin/sh
# Removes from the runtime venv what no ppg-mi role loads at run time. Each line names what it cuts
# and why it is dead weight; images/README.md gives the sizes, and the image test tier runs every
# role from the slimmed image, so a cut that a role needs fails the tests.
set -eu
venv="$1"
site="$(echo "$venv"/lib/python3*/site-packages)"

# test suites shipped inside wheels (pandas alone: 40 MB); nothing imports them at run time
find "$site" -depth -type d -name tests -prune -exec rm -rf {} +
rm -rf "$site/pyarrow/_pyarrow_cpp_tests"*

# pyarrow (pulled in by streamlit, which only converts data frames with it): the Flight RPC
# framework, cloud file systems, C++ headers and Cython sources are loaded only on their own
# imports (`pyarrow.flight`, `pyarrow.fs.S3FileSystem`, ...), which no role makes
rm -rf "$site/pyarrow/include" "$site/pyarrow/src" \
       "$site"/pyarrow/libarrow_flight.so* "$site"/pyarrow/libarrow_python_flight.so* \
       "$site"/pyarrow/_flight.* "$site"/pyarrow/libarrow_s3.so* "$site"/pyarrow/_s3fs.* \
       "$site"/pyarrow/_gcsfs.* "$site"/pyarrow/_azurefs.* "$site"/pyarrow/_hdfs.* "$site"/pyarrow/_cuda.*
find "$site/pyarrow" -maxdepth 1 \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete

# the kubernetes client's asyncio twin (68 MB): `ppg-mi cluster` uses the synchronous client
rm -rf "$site/kubernetes/aio"

# aeon's bundled example data sets: ppg-mi trains on its own data
rm -rf "$site/aeon/datasets/data"

# numba's GPU targets: no role runs on a GPU
rm -rf "$site/numba/cuda"

# the installers: nothing is installed into the image at run time
"$venv/bin/python" -m pip uninstall -q -y pip setuptools
