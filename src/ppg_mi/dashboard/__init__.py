"""The live Streamlit dashboard (see docs/dashboard.md).

- :mod:`.state`    bounded, deduplicated in-memory state (numpy columns), no Kafka, no Streamlit
- :mod:`.views`    pure functions from a state snapshot to what the page shows
- :mod:`.reader`   the one background Kafka reader thread of a server process
- :mod:`.runtime`  the process-wide singleton owning state, reader and the metrics server
- :mod:`.page`     the Streamlit rendering; ``app.py`` is the script ``streamlit`` runs
"""

from pathlib import Path

APP_SCRIPT = Path(__file__).with_name("app.py")
