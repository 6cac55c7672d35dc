# GKD on the synthetic set with *margin* logits of both networks (the
# inputs of the authors' code), otherwise exactly gkd_r18_mbf_synth.py
# (s*cos logits, the headline choice). The logits study of docs/results.md
# ("GKD regime") trains both and compares them pair by pair:
#   python tools/analysis/run_comparison.py --preset synthetic
_base_ = ['./gkd_r18_mbf_synth.py']
model = dict(distill_losses=dict(gkd=dict(
    inputs=dict(student_logits='student.margin_logits',
                teacher_logits='teacher.margin_logits',
                gt_label='gt_label'))))
