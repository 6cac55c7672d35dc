# GKD (AAAI 2023), GKD Table 5: IR50 teacher -> MobileFaceNet student on
# MS1MV2, the paper's grouping at the authors' temperature (T = 4, see
# ../_base_/losses/gkd.py for why not T = 1).
#   tools/dist_train.sh configs/gkd/gkd_r50_mbf.py 8
# Needs the teacher at checkpoints/arcface_r50_ms1mv2.pth (train it with
# configs/arcface/arcface_r50_ms1mv2.py or see the README for insightface's).
_base_ = ['../_base_/distillers/r50_mbf_ms1mv2.py', '../_base_/losses/gkd.py']
model = dict(distill_losses=dict(gkd={{_base_.gkd_loss}}))
