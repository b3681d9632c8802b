"""`rustseg batch`: one run record per archive input, an index, a manifest for resuming.

Modules, one job each: `inputs` (what an INPUT names), `manifest` (fingerprints and the resume
rule), `work` (the one function that processes one input; both engines call it), `engines`
(local process pool, Ray), `index` (index.csv / index.html), `progress` (frames
done, for the bar), `runner` (the recipe).
"""

from edge.batch.runner import BatchRequest, BatchResult, run_batch

__all__ = ["BatchRequest", "BatchResult", "run_batch"]
