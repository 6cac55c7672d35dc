# CAKD: Swin-T teacher -> IResNet-18 student (the student's last map is
# `bn2`, (B, 512, 7, 7), the trunk output before the flatten/FC embedding).
_base_ = './cakd_swin_t_mbf.py'
model = dict(
    student=dict(backbone=dict(_delete_=True, type='IResNet', depth=18,
                               num_features=512)),
    recorders=dict(s_feat=dict(source='student.backbone.bn2')))
