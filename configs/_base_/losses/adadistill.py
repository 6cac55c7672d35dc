# AdaDistill (Boutros et al., ECCV 2024): ArcFace (s=64, m=0.45: the paper's
# AdaArcDistill) over class centres that follow the teacher's embeddings by an
# EMA with the adaptive weight
# alpha' = clamp(cos(f_s, f_t) cos(w_y, f_t), 0, 1);
# MS1MV2 / 512-d sizes (the demo overrides them). Only teacher embeddings are
# read, so `model.teacher_cache` works. It replaces the student's own
# classifier: the configs set model.student.head=None. For AdaCosDistill set
# m2=0.0, m3=0.35.
adadistill_loss = dict(
    type='AdaDistillLoss', num_classes=85742, embed_dim=512, s=64.0, m2=0.45,
    loss_weight=1.0,
    inputs=dict(student_embedding='student.embedding',
                teacher_embedding='teacher.embedding',
                gt_label='gt_label'))
