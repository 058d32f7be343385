"""Victor plug-in: Victor's own ``EmbeddingService`` (its intent and task
classifiers, and anything else that asks it) gets its vectors from the
vembed host instead of loading sentence-transformers and torch.

Installed with the package, it does nothing until the user opts in
(``vembed setup victor`` sets these for every process of Victor's
environment, from a ``vembed-victor.pth`` there)::

    export VEMBED_VICTOR=1              # or true/yes/on
    export VEMBED_VICTOR_MODEL=...      # optional: the model to serve Victor
                                        # (default: the host's tool-selection model)

Victor runs the functions registered under the ``victor.bootstrap_services``
entry point at start-up, before anything has created its
``EmbeddingService``. This one then

1. installs ``vembed.shim``, so ``import sentence_transformers`` anywhere in
   the process gives vembed's drop-in (torch is never imported), and
2. creates Victor's ``EmbeddingService`` singleton with the model the vembed
   host serves (``VEMBED_VICTOR_MODEL``, else the host's ``embedding_model``
   role), after checking that the host answers for it.

Victor swallows errors raised by bootstrap hooks (and then falls back to
zero or random vectors), so a failure here is also logged as a warning
and printed on stderr, naming the cause.

Victor's tool selector and its codebase search reach the host over HTTP
instead (``embedding_provider: ollama``); see the README.
"""

import logging
import os
import sys

ENV = "VEMBED_VICTOR"
MODEL_ENV = "VEMBED_VICTOR_MODEL"

log = logging.getLogger("vembed.victor")


def enabled():
    """Whether the user opted in (``VEMBED_VICTOR`` is 1, true, yes or on)."""
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def served_model(client):
    """The model the plug-in gives Victor: ``VEMBED_VICTOR_MODEL``, else the
    host's tool-selection model."""
    wanted = os.environ.get(MODEL_ENV, "").strip()
    if wanted:
        return wanted
    for m in client.hello["models"]:
        if "Tools" in m["roles"]:
            return m["name"]
    return client.hello["models"][0]["name"]


def bootstrap(container=None, settings=None, context=None):
    """The ``victor.bootstrap_services`` hook. Returns the model name it
    installed, or None when the plug-in is off."""
    if not enabled():
        return None
    try:
        from . import shim
        from .client import Client
        from .sentence_transformer import SentenceTransformer

        shim.install()
        client = Client()
        model = served_model(client)
        # Fails now, loudly, if the host cannot serve it.
        dim = SentenceTransformer(model, client=client).get_sentence_embedding_dimension()
        from victor.storage.embeddings.service import EmbeddingService

        service = EmbeddingService.get_instance(model_name=model)
        if service.model_name != model:
            raise RuntimeError(
                "Victor's EmbeddingService was created before the vembed plug-in ran (model %r)"
                % service.model_name
            )
        log.info("vembed: Victor's EmbeddingService uses %s (dim %d) on the vembed host", model, dim)
        return model
    except Exception as e:  # Victor would swallow it: say it where it is seen.
        message = "vembed: the Victor plug-in (VEMBED_VICTOR=1) could not take over embeddings: %s" % e
        log.warning(message)
        print(message, file=sys.stderr)
        raise
