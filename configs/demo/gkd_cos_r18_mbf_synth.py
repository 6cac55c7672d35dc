# GKD on the synthetic set with *s*cos* logits of both networks, otherwise
# exactly gkd_r18_mbf_synth.py (margin logits, the headline choice). The
# logits study of docs/results.md ("GKD regime") trains both and compares
# them pair by pair (margin logits won on 3 of 3 seeds):
#   python tools/analysis/run_comparison.py --preset synthetic
_base_ = ['./gkd_r18_mbf_synth.py']
model = dict(distill_losses=dict(gkd=dict(
    inputs=dict(student_logits='student.logits',
                teacher_logits='teacher.logits', gt_label='gt_label'))))
