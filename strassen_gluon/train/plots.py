"""Learning curves of a run across its stages, drawn from its log records.

Uses a bare ``matplotlib.figure.Figure`` (no pyplot, no backend switch), so it works in scripts,
on headless machines and inside Jupyter alike.
"""
from matplotlib.figure import Figure

STAGE_COLOURS = {'full': '#dbe9f6', 'ternary': '#fde8d0', 'frozen': '#e3f1dc', 'dense': '#eeeeee'}


# The evaluation curves of the top panel, by task: (log key, label).
ACCURACY = (('train_acc', 'train'), ('val_acc', 'validation'), ('top1', 'top-1'),
            ('top5', 'top-5'))
PERPLEXITY = (('train_ppl', 'train'), ('val_ppl', 'validation'))


def learning_curve_figure(records, title=None):
    """A Figure with the evaluation metric (top: accuracy, or perplexity on a log axis for the
    language model) and the training loss (bottom) per epoch, stages shaded.

    `records` are log.jsonl records (stage, global_epoch, train_loss, lr and the task's
    metrics).
    """
    fig = Figure(figsize=(8, 6), tight_layout=True)
    acc_ax, loss_ax = fig.subplots(2, 1, sharex=True)
    x = [r['global_epoch'] + 1 for r in records]
    perplexity = any('val_ppl' in r for r in records)
    for key, label in PERPLEXITY if perplexity else ACCURACY:
        if all(key in r for r in records):
            acc_ax.plot(x, [r[key] for r in records], '.-', label=label)
    if perplexity:
        acc_ax.set_yscale('log')
    acc_ax.set_ylabel('perplexity' if perplexity else 'accuracy')
    acc_ax.legend(loc='upper right' if perplexity else 'lower right')
    loss_ax.plot(x, [r['train_loss'] for r in records], '.-', color='C3')
    loss_ax.set_ylabel('training loss')
    loss_ax.set_xlabel('epoch (all stages)')
    lr_ax = loss_ax.twinx()
    lr_ax.step(x, [r['lr'] for r in records], where='mid', color='0.5', linewidth=0.8)
    lr_ax.set_yscale('log')
    lr_ax.set_ylabel('learning rate', color='0.5')
    for name, first, last in stage_spans(records):
        for ax in (acc_ax, loss_ax):
            ax.axvspan(first + 0.5, last + 1.5, color=STAGE_COLOURS.get(name, '#f0f0f0'),
                       zorder=0)
        acc_ax.text((first + last) / 2 + 1, 1.0, name, ha='center', va='bottom',
                    transform=acc_ax.get_xaxis_transform(), fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def stage_spans(records):
    """[(stage name, first global epoch, last global epoch)] in order of appearance."""
    spans = []
    for r in records:
        if spans and spans[-1][0] == r['stage']:
            spans[-1][2] = r['global_epoch']
        else:
            spans.append([r['stage'], r['global_epoch'], r['global_epoch']])
    return [tuple(s) for s in spans]


def save_learning_curves(records, path, title=None):
    """Write the learning-curve PNG of `records` to `path` (nothing to draw: no file)."""
    if not records:
        return None
    learning_curve_figure(records, title).savefig(path, dpi=100)
    return path
