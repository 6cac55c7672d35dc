"""job_runner: which work dirs count as finished."""
import os

from mmfacekd.utils.job_runner import _final_epoch, _is_final, last_checkpoint


def test_final_epoch_and_interrupted_runs(tmp_path):
    assert _final_epoch('configs/demo/arcface_vit_synth.py') == 6
    assert _final_epoch('configs/demo/kd_r18_mbf_synth.py') == 4
    assert not _is_final('w/epoch_3.pth', 6)
    assert _is_final('w/epoch_6.pth', 6)
    assert _is_final('w/iter_500.pth', 6)  # iteration-based: trust it
    assert last_checkpoint(str(tmp_path)) is None
    ckpt = tmp_path / 'epoch_2.pth'
    ckpt.write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    assert last_checkpoint(str(tmp_path)) == str(ckpt)
    os.remove(ckpt)  # a stale pointer is not a checkpoint
    assert last_checkpoint(str(tmp_path)) is None
