"""Publishing to the Hugging Face Hub: a built folder's shards and card in one commit.

- :mod:`~llava_hf.hub.push`: :func:`push_to_hub`, the one commit;
- :mod:`~llava_hf.hub.shards`: what is pushed (a built folder, or JSON built first), re-sharded when needed;
- :mod:`~llava_hf.hub.retries`: the Hub's errors as llava-hf's, and retries of transient failures.
"""

from .push import PushResult, push_to_hub

__all__ = ["PushResult", "push_to_hub"]
