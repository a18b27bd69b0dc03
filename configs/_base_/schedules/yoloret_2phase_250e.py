# The official YOLO-ReT schedule (code/train.py, main.py defaults): phase 1 trains 100 epochs
# with the ImageNet backbone frozen (weights and BN statistics), Adam lr 1e-3 with cosine
# decay; phase 2 unfreezes everything for 150 epochs, Adam lr 1e-4 with cosine decay.
# In mmengine terms: one CosineRestartLR with two periods, and FreezeBackboneHook.
max_epochs = 250
unfreeze_epoch = 100

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, eps=1e-8))
param_scheduler = [
    dict(type='CosineRestartLR', by_epoch=True, begin=0, end=max_epochs,
         periods=[unfreeze_epoch, max_epochs - unfreeze_epoch], restart_weights=[1.0, 0.1],
         eta_min=0.0, convert_to_iter_based=True),
]
custom_hooks = [dict(type='FreezeBackboneHook', unfreeze_epoch=unfreeze_epoch)]
# Frozen parameters take no part in phase 1's backward; DDP must tolerate that.
find_unused_parameters = True
auto_scale_lr = dict(enable=False, base_batch_size=16)
