"""The run record: its folder layout, the recorder that writes it during a run, the findings
and positions, and the report made from it afterwards.
"""
