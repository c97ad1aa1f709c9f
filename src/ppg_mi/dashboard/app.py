"""The script ``streamlit run`` executes for every browser session and rerun.

Kept trivial on purpose: Streamlit re-executes this file, while imported modules (and
the process-wide reader they own) stay loaded.
"""

from ppg_mi.dashboard.page import main

main()
