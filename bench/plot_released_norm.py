"""The input-scaling experiment of issue 18 ('imagenet' = this package vs 'released' = ImageNet standardisation divided
by 255 again, as the released Mobile U-ViT loader does; 3 splits x 2 seeds): `plot_paired.py` on its logs."""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from plot_paired import main

if __name__ == '__main__':
    main([str(Path(__file__).parent/'figures'/'h200x2_busi_released_norm_logs.csv'), '--arms', 'imagenet,released',
          '--title', 'input scaling: mean over 3 splits x 2 seeds'])
