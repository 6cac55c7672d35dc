# AdaDistill on the synthetic set (CPU), same budget as the other demo
# methods: the demo teacher's embeddings -> EMA class centres (300 x 128) that
# the slim MBF student is classified against with the demo heads' ArcFace
# (s=32, m=0.3). It replaces the student's own classifier (student.head=None).
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/adadistill.py']
model = dict(
    student=dict(head=None),
    distill_losses=dict(
        adadistill=dict(_base_.adadistill_loss, num_classes=300,
                        embed_dim=128, s=32.0, m2=0.3)))
