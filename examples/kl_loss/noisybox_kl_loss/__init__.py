"""KL-Loss (He et al., CVPR 2019) for noisybox-bench: registered as method `kl_loss` through the
`noisybox_bench.methods` entry point. `adapter.KlLoss` is the adapter, `head` the torchvision RoI heads,
`loss` the KL loss, `voting` variance voting, `config` the defaults with their sources."""
