"""The shipped ImageNet weights really load into timm's tf_efficientnet_lite0."""

import pytest
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform

from vecaf_bench.errors import UserError
from vecaf_bench_plugins.backbones.timm_backbone import TimmBackbone


def test_shipped_weights_classify_chelsea_as_a_cat():
    from skimage.data import chelsea

    bb = TimmBackbone("tf_efficientnet_lite0", weights="default")
    assert bb.fingerprint.startswith("timm:tf_efficientnet_lite0:shipped:")
    model = bb.create_model(1000).eval()  # 1000 classes: the pretrained head is kept
    x = create_transform(**bb.data_config)(Image.fromarray(chelsea()))[None]
    with torch.inference_mode():
        probs = model(x).softmax(-1)[0]
    top = [ImageNetInfo().index_to_description(int(i)) for i in probs.topk(3).indices]
    cats = {"tiger cat", "Egyptian cat", "tabby, tabby cat", "Persian cat", "Siamese cat, Siamese"}
    assert top[0] in cats, top
    assert float(probs[list(map(int, probs.topk(3).indices))].sum()) > 0.5


def test_new_head_and_embedding_shape():
    bb = TimmBackbone("tf_efficientnet_lite0")
    model = bb.create_model(7).eval()
    x = torch.zeros(2, 3, 32, 32)
    with torch.inference_mode():
        assert model(x).shape == (2, 7)
        assert bb.embed(model, x).shape == (2, 1280)


def test_weights_file_and_bad_weights(tmp_path):
    bb = TimmBackbone("resnet18", weights="none")
    model = bb.create_model(5)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    loaded = TimmBackbone("resnet18", weights=str(path)).create_model(5)
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)
    with pytest.raises(UserError, match="neither default, hub, shipped, none nor an existing file"):
        TimmBackbone("resnet18", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="--weights shipped exists only for tf_efficientnet_lite0"):
        TimmBackbone("resnet18", weights="shipped")
