"""The model registry over the domain folders of jaxdl/models: keys are module names, duplicates fail by name."""

import sys

import pytest

from jaxdl import models


def test_registry_finds_models_in_domain_folders_and_rejects_a_duplicate(tmp_path, monkeypatch):
    assert models.module_name("gpt") == "jaxdl.models.language.gpt"
    assert models.module_name("vit") == "jaxdl.models.vision.vit"
    assert models.module_name("transformer") == "jaxdl.models.transformer"
    assert {"logistic", "mlp", "cnn1d", "gru", "lenet", "resnet", "vit", "gpt", "bert", "seq2seq"} <= set(
        models.available()
    )
    assert not any(name.startswith("_") for name in models.available())  # _lm_head is a helper, not a model
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "__init__.py").write_text("")
    (tmp_path / "extra" / "gpt.py").write_text("")
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
    models._index.cache_clear()
    try:
        with pytest.raises(
            ValueError, match=r"'gpt' is defined twice: jaxdl.models.language.gpt and jaxdl.models.extra.gpt"
        ):
            models.get_class("gpt")
    finally:
        monkeypatch.undo()
        models._index.cache_clear()
        sys.modules.pop("jaxdl.models.extra", None)
