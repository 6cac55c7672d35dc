# MarginDistillation (Svitov & Alyamkin, 2020): ArcFace over the teacher's
# class centers (its checkpoint's classifier) with the per-sample margin
# 0.2..0.5 set by the teacher; MS1MV2 / IR50-teacher sizes (the demo overrides
# them). The configs also set student_loss_weight=0 (it replaces the student's
# own margin softmax).
margin_distillation_loss = dict(
    type='MarginDistillationLoss',
    prototype_file='checkpoints/arcface_r50_ms1mv2.pth',
    num_classes=85742, embed_dim=512, scale=64.0, m_min=0.2, m_max=0.5,
    loss_weight=1.0,
    inputs=dict(student_embedding='student.embedding',
                teacher_embedding='teacher.embedding',
                gt_label='gt_label'))
