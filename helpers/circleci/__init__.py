"""CircleCI: the API's resource models, a client, a live pipeline watch, ``rollback-lab trigger``.

Import what you use from the submodules (``helpers.circleci.models``, ``.client``, ``.watch``);
this package imports nothing eagerly, so the local CircleCI server can load the models alone.
"""
