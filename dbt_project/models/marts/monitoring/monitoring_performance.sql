{{ config(materialized='table', tags=['monitoring']) }}

{#-
    Realized performance of each scored month whose applications have labels: AUC
    (Mann-Whitney, ties counted as half), Gini = 2 AUC - 1, Kolmogorov-Smirnov statistic and
    the default rate. Months without labels have no row. The comparison with the model's
    validation AUC is made in flows/monitoring.py, because the registry stores metrics as JSON.
-#}

with

labeled_predictions as (
    select * from {{ ref('monitoring_labeled_predictions') }}
),

month_auc as (
    {{ monitoring_auc('labeled_predictions', ['month']) }}
),

score_points as (
    select
        month,
        default_probability,
        sum(target) as positives,
        sum(1 - target) as negatives
    from labeled_predictions
    group by month, default_probability
),

-- A month with one class has a zero sum here: nullif makes both engines give null, where
-- DuckDB would give NaN and PostgreSQL raise "division by zero".
cumulative_rates as (
    select
        month,
        sum(positives) over (
            partition by month order by default_probability desc
            rows between unbounded preceding and current row
        ) / cast(nullif(sum(positives) over (partition by month), 0) as {{ type_double() }})
            as true_positive_rate,
        sum(negatives) over (
            partition by month order by default_probability desc
            rows between unbounded preceding and current row
        ) / cast(nullif(sum(negatives) over (partition by month), 0) as {{ type_double() }})
            as false_positive_rate
    from score_points
),

month_ks as (
    select
        month,
        max(abs(true_positive_rate - false_positive_rate)) as ks
    from cumulative_rates
    group by month
),

month_models as (
    select
        month,
        min(model_id) as model_id,
        count(*) as scored_rows
    from labeled_predictions
    group by month
),

final as (
    select
        month_auc.month,
        month_models.model_id,
        month_auc.labeled_rows,
        month_auc.positives as defaulted,
        month_auc.positives / cast(nullif(month_auc.labeled_rows, 0) as {{ type_double() }})
            as default_rate,
        month_auc.auc,
        2 * month_auc.auc - 1 as gini,
        case when month_auc.auc is not null then month_ks.ks end as ks
    from month_auc
    inner join month_models
        on month_auc.month = month_models.month
    inner join month_ks
        on month_auc.month = month_ks.month
)

select * from final
